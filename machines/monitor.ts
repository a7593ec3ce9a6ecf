// The monitor statechart: invoked by a sandbox while it runs (so it stops on pause,
// stop, failure and delete, and starts again on start and resume). Every interval it
// asks the agent whether the guest answers, within a deadline. The first failure is
// reported to the sandbox once, and the monitor ends: no repeated errors every tick.
// A guest that exits is seen by the backend at once, without waiting for a tick.
import { fromPromise, sendParent, setup } from 'xstate';
import type { FailureReason } from './lifecycle.js';

export interface MonitorInput {
  sandboxId: string;
  intervalMs: number;
  deadlineMs: number;
}

export interface CheckInput {
  sandboxId: string;
  deadlineMs: number;
}

/** What a failed check rejects with. */
export interface CheckFailure {
  reason: Extract<FailureReason, 'agent-unreachable' | 'check-timeout'>;
  message: string;
  at: string;
}

export const monitorMachine = setup({
  types: {
    input: {} as MonitorInput,
    context: {} as MonitorInput,
  },
  actors: {
    checkAgent: fromPromise<void, CheckInput>(async () => {
      throw new Error('monitor checkAgent is not provided');
    }),
  },
  delays: {
    interval: ({ context }) => context.intervalMs,
  },
  actions: {
    reportFailure: sendParent(({ event }) => {
      const failure = (event as { error?: Partial<CheckFailure> }).error ?? {};
      return {
        type: 'GUEST_FAILED' as const,
        reason: failure.reason ?? 'agent-unreachable',
        message: failure.message ?? 'the agent check failed',
        at: failure.at ?? '',
      };
    }),
  },
}).createMachine({
  id: 'monitor',
  description: 'Watches the guest of a running sandbox.',
  context: ({ input }) => ({ ...input }),
  initial: 'watching',
  states: {
    watching: {
      description: 'Checks the agent every interval.',
      initial: 'waiting',
      states: {
        waiting: {
          description: 'Until the next check.',
          after: { interval: 'checking' },
        },
        checking: {
          description: 'The agent must answer within the deadline.',
          invoke: {
            id: 'checkAgent',
            src: 'checkAgent',
            input: ({ context }) => ({ sandboxId: context.sandboxId, deadlineMs: context.deadlineMs }),
            onDone: 'waiting',
            onError: { target: '#monitor.reported', actions: 'reportFailure' },
          },
        },
      },
    },
    reported: {
      description: 'The failure went to the sandbox, once. Final.',
      type: 'final',
    },
  },
});
