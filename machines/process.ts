// The process statechart: one per exec'd process, spawned as a child of its container
// when the exec is added, before the agent starts it. Its notices follow containerd's
// order for an exec: exec-added, exec-started, then exit. An exit that arrives before
// the start is confirmed is kept and reported right after it.
import { assign, sendParent, setup } from 'xstate';
import { exitFields, type ExitNews } from './lifecycle.js';

export interface ProcessInput {
  execId: string;
}

export interface ProcessContext extends ProcessInput {
  pid: number;
  pidUnknown?: boolean;
  exitStatus?: number;
  exitUnknown?: boolean;
  exitedAt?: string;
}

export type ProcessEvent =
  | { type: 'STARTED'; pid: number; pidUnknown?: boolean }
  | { type: 'START_FAILED' }
  | ({ type: 'EXITED' } & ExitNews);

export const processMachine = setup({
  types: {
    input: {} as ProcessInput,
    context: {} as ProcessContext,
    events: {} as ProcessEvent,
  },
  actions: {
    announceAdded: sendParent(({ context }) => ({
      type: 'PROCESS_NOTICE' as const,
      notice: { type: 'exec-added', execId: context.execId, state: 'starting' },
    })),
    recordPid: assign(({ event }) => {
      const e = event as Extract<ProcessEvent, { type: 'STARTED' }>;
      return { pid: e.pid, pidUnknown: !!e.pidUnknown };
    }),
    announceStarted: sendParent(({ context }) => ({
      type: 'PROCESS_NOTICE' as const,
      notice: { type: 'exec-started', execId: context.execId, state: 'running', pid: context.pid, ...(context.pidUnknown ? { pidUnknown: true } : {}) },
    })),
    recordExit: assign(({ event }) => {
      const e = event as Extract<ProcessEvent, { type: 'EXITED' }>;
      return { exitStatus: e.status, exitUnknown: !!e.unknown, exitedAt: e.at };
    }),
    announceExit: sendParent(({ context }) => ({
      type: 'PROCESS_NOTICE' as const,
      notice: {
        type: 'exit',
        execId: context.execId,
        state: 'exited',
        pid: context.pid,
        ...exitFields(context.exitStatus, context.exitUnknown, context.exitedAt),
      },
    })),
  },
  guards: {
    hasExited: ({ context }) => context.exitStatus !== undefined,
  },
}).createMachine({
  id: 'process',
  description: "A process exec'd in a container.",
  context: ({ input }) => ({ ...input, pid: 0 }),
  initial: 'starting',
  states: {
    starting: {
      description: 'Added; the agent is starting it.',
      entry: 'announceAdded',
      on: {
        STARTED: [
          { guard: 'hasExited', target: 'exited', actions: ['recordPid', 'announceStarted', 'announceExit'] },
          { target: 'running', actions: ['recordPid', 'announceStarted'] },
        ],
        // A short-lived process may exit before its start is confirmed.
        EXITED: { actions: 'recordExit' },
        START_FAILED: 'failed',
      },
    },
    running: {
      description: 'Started by the agent; its exit is awaited.',
      on: { EXITED: { target: 'exited', actions: ['recordExit', 'announceExit'] } },
    },
    exited: {
      description: 'Exited with a status (255, marked unknown, when nobody can tell it). Final.',
      type: 'final',
    },
    failed: {
      description: 'The agent could not start it; nothing ran. Final.',
      type: 'final',
    },
  },
});
