// The process statechart: one per exec'd process, spawned as a child of its container
// once the agent has started it. Its notices follow containerd's order for an exec:
// exec-added, exec-started, then exit.
import { sendParent, setup, assign } from 'xstate';
import { UNKNOWN_EXIT_STATUS } from './lifecycle.js';

export interface ProcessInput {
  execId: string;
  pid: number;
}

export interface ProcessContext extends ProcessInput {
  exitStatus?: number;
  exitedAt?: string;
}

export type ProcessEvent = { type: 'EXITED'; status: number; at: string };

export const processMachine = setup({
  types: {
    input: {} as ProcessInput,
    context: {} as ProcessContext,
    events: {} as ProcessEvent,
  },
  actions: {
    announceStart: sendParent(({ context }) => ({ type: 'PROCESS_NOTICE' as const, notice: { type: 'exec-added', execId: context.execId, state: 'running' } })),
    announceRunning: sendParent(({ context }) => ({
      type: 'PROCESS_NOTICE' as const,
      notice: { type: 'exec-started', execId: context.execId, state: 'running', pid: context.pid },
    })),
    recordExit: assign(({ event }) => ({ exitStatus: event.status, exitedAt: event.at })),
    announceExit: sendParent(({ context }) => ({
      type: 'PROCESS_NOTICE' as const,
      notice: {
        type: 'exit',
        execId: context.execId,
        state: 'exited',
        pid: context.pid,
        exitStatus: context.exitStatus ?? UNKNOWN_EXIT_STATUS,
        exitedAt: context.exitedAt ?? '',
      },
    })),
  },
}).createMachine({
  id: 'process',
  description: "A process exec'd in a running container.",
  context: ({ input }) => ({ ...input }),
  initial: 'running',
  states: {
    running: {
      description: 'Started by the agent; its exit is awaited.',
      entry: ['announceStart', 'announceRunning'],
      on: { EXITED: { target: 'exited', actions: ['recordExit', 'announceExit'] } },
    },
    exited: {
      description: 'Exited with a status (255 when the guest died). Final.',
      type: 'final',
    },
  },
});
