// The process statechart: one per exec'd process, spawned as a child of its container
// when the exec is added; it starts the process through the agent (startProcess). Its
// notices follow containerd's order for an exec: exec-added, exec-started, then exit.
// A process the guest refused to start publishes nothing (the exec command fails). An
// exit that arrives before the start is confirmed is kept and reported right after it.
import { assign, fromPromise, sendParent, setup } from 'xstate';
import { exitFields, summarizeError, type ErrorSummary, type ExitNews } from './lifecycle.js';
import type { ProcessSpec } from './specs.js';

export interface ProcessInput {
  sandboxId: string;
  containerId: string;
  execId: string;
  process: ProcessSpec;
  /** Deadline of the exec command (ms since the epoch). */
  deadline?: number;
}

export interface ProcessContext extends ProcessInput {
  pid: number;
  pidUnknown?: boolean;
  exitStatus?: number;
  exitUnknown?: boolean;
  exitedAt?: string;
  /** OOMKilled, with the limit in the message, when the kernel's OOM killer ended it. */
  exitReason?: string;
  exitMessage?: string;
  lastError?: ErrorSummary;
}

/** What starting the process in the guest returns. */
export interface ProcessStartOutput {
  pid: number;
  /** The agent could not learn the pid (a stock agent says none): pid is 0. */
  pidUnknown?: boolean;
}

export type ProcessEvent = { type: 'EXITED' } & ExitNews;

export const processMachine = setup({
  types: {
    input: {} as ProcessInput,
    context: {} as ProcessContext,
    events: {} as ProcessEvent,
  },
  actors: {
    startProcess: fromPromise<ProcessStartOutput, ProcessInput>(async () => {
      throw new Error('process startProcess is not provided');
    }),
  },
  actions: {
    recordPid: assign((_, out: ProcessStartOutput) => ({ pid: out.pid, pidUnknown: !!out.pidUnknown })),
    recordError: assign({ lastError: ({ event }) => summarizeError((event as { error?: unknown }).error) }),
    announceAdded: sendParent(({ context }) => ({
      type: 'PROCESS_NOTICE' as const,
      notice: { type: 'exec-added' as const, execId: context.execId, state: 'starting' },
    })),
    announceStarted: sendParent(({ context }) => ({
      type: 'PROCESS_NOTICE' as const,
      notice: { type: 'exec-started' as const, execId: context.execId, state: 'running', pid: context.pid, ...(context.pidUnknown ? { pidUnknown: true } : {}) },
    })),
    recordExit: assign(({ event }) => ({ exitStatus: event.status, exitUnknown: !!event.unknown, exitedAt: event.at, exitReason: event.reason, exitMessage: event.message })),
    announceExit: sendParent(({ context }) => ({
      type: 'PROCESS_NOTICE' as const,
      notice: {
        type: 'exit' as const,
        execId: context.execId,
        state: 'exited',
        pid: context.pid,
        ...exitFields(context.exitStatus, context.exitUnknown, context.exitedAt),
        ...(context.exitReason ? { reason: context.exitReason, message: context.exitMessage ?? '' } : {}),
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
      description: 'Added; the agent is starting it (startProcess).',
      invoke: {
        id: 'op.startProcess',
        src: 'startProcess',
        input: ({ context }) => ({
          sandboxId: context.sandboxId,
          containerId: context.containerId,
          execId: context.execId,
          process: context.process,
          deadline: context.deadline,
        }),
        onDone: [
          {
            guard: 'hasExited',
            target: 'exited',
            actions: [{ type: 'recordPid', params: ({ event }) => event.output }, 'announceAdded', 'announceStarted', 'announceExit'],
          },
          { target: 'running', actions: [{ type: 'recordPid', params: ({ event }) => event.output }, 'announceAdded', 'announceStarted'] },
        ],
        onError: { target: 'failed', actions: 'recordError' },
      },
      on: {
        // A short-lived process may exit before its start is confirmed.
        EXITED: { actions: 'recordExit' },
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
      description: 'The agent could not start it; nothing ran and nothing was announced. Final.',
      type: 'final',
    },
  },
});
