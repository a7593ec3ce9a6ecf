// The agent connection statechart: one per sandbox, in front of its guest agent.
// Guest calls wait for `connected`; once `dead` (the monitor gave up on the guest)
// every call fails fast instead of waiting for a timeout.
import { assign, fromPromise, setup } from 'xstate';
import { summarizeError, type ErrorSummary } from './lifecycle.js';

export interface AgentContext {
  lastError?: ErrorSummary;
  deadReason?: string;
}

export type AgentEvent =
  | { type: 'CONNECT' }
  | { type: 'DISCONNECT' }
  | { type: 'CONNECTION_LOST'; message: string }
  | { type: 'MARK_DEAD'; reason: string };

export const agentMachine = setup({
  types: {
    context: {} as AgentContext,
    events: {} as AgentEvent,
  },
  actors: {
    connect: fromPromise<void>(async () => {
      throw new Error('agent connect is not provided');
    }),
    disconnect: fromPromise<void>(async () => {
      throw new Error('agent disconnect is not provided');
    }),
  },
  actions: {
    recordError: assign({ lastError: ({ event }) => summarizeError((event as { error?: unknown }).error) }),
    recordLoss: assign({
      lastError: ({ event }) => ({ code: 'Unavailable', message: (event as { message?: string }).message ?? 'connection lost' }),
    }),
    clearError: assign({ lastError: undefined }),
    recordDeath: assign({ deadReason: ({ event }) => (event as { reason?: string }).reason ?? 'marked dead' }),
  },
}).createMachine({
  id: 'agent',
  description: "The host's connection to the sandbox's guest agent.",
  context: {},
  initial: 'disconnected',
  on: {
    MARK_DEAD: { target: '.dead', actions: 'recordDeath' },
  },
  states: {
    disconnected: {
      description: 'No connection; the next guest call connects.',
      on: { CONNECT: { target: 'connecting', actions: 'clearError' } },
    },
    connecting: {
      description: 'Dialing the guest agent (and its handshake, where the protocol has one).',
      invoke: {
        id: 'connect',
        src: 'connect',
        onDone: { target: 'connected' },
        onError: { target: 'disconnected', actions: 'recordError' },
      },
    },
    connected: {
      description: 'Guest calls go through.',
      on: {
        DISCONNECT: { target: 'disconnecting' },
        CONNECTION_LOST: { target: 'disconnected', actions: 'recordLoss' },
      },
    },
    disconnecting: {
      description: 'Closing the connection.',
      invoke: {
        id: 'disconnect',
        src: 'disconnect',
        onDone: { target: 'disconnected' },
        onError: { target: 'disconnected' },
      },
    },
    dead: {
      description: 'The guest is gone; every call fails fast with Unavailable. Final.',
      type: 'final',
    },
  },
});
