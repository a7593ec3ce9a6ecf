// The container statechart: one per container, spawned as a child of its sandbox.
//
// Stable states follow the reference's table (ready, running, paused, stopped); the
// -ing states run one named agent operation each. Operations that do not change state
// (kill, exec, ps, wait, stats) are accepted only in the states listed here, so
// `snapshot.can()` answers every precondition and the exported chart shows them.
// Lifecycle notices go to the parent sandbox, which numbers and emits them.
import { assign, fromPromise, not, sendParent, setup, spawnChild, type ActorRefFrom } from 'xstate';
import type { ContainerSpec } from './specs.js';
import { exitFields, lostExit, summarizeError, type ErrorSummary, type ExitNews, type LifecycleNotice } from './lifecycle.js';
import { processMachine } from './process.js';

export interface ContainerInput {
  sandboxId: string;
  spec: ContainerSpec;
}

export interface ContainerContext {
  sandboxId: string;
  id: string;
  spec: ContainerSpec;
  pid: number;
  /** The init process runs, but the agent could not learn its pid. */
  pidUnknown?: boolean;
  startedAt?: string;
  exitStatus?: number;
  /** The init process exited with a status nobody can tell (exitStatus is 255). */
  exitUnknown?: boolean;
  exitedAt?: string;
  lastError?: ErrorSummary;
}

/** What every container agent operation receives. */
export interface ContainerOpInput {
  sandboxId: string;
  containerId: string;
  spec: ContainerSpec;
}

export interface ContainerStartOutput {
  pid: number;
  pidUnknown?: boolean;
  startedAt: string;
}

/** What stopping found out about the init process, when it had been started. */
export interface ContainerStopOutput {
  exitStatus?: number;
  exitStatusUnknown?: boolean;
  exitedAt?: string;
}

export type ContainerEvent =
  | { type: 'START' }
  | { type: 'STOP' }
  | { type: 'PAUSE' }
  | { type: 'RESUME' }
  | { type: 'DELETE' }
  | { type: 'KILL' }
  | { type: 'EXEC' }
  | { type: 'PS' }
  | { type: 'WAIT' }
  | { type: 'STATS' }
  | ({ type: 'PROCESS_EXITED' } & ExitNews)
  | { type: 'GUEST_LOST'; at: string }
  | { type: 'EXEC_ADDED'; execId: string }
  | { type: 'EXEC_STARTED'; execId: string; pid: number; pidUnknown?: boolean }
  | { type: 'EXEC_FAILED'; execId: string }
  | ({ type: 'EXEC_EXITED'; execId: string } & ExitNews)
  | { type: 'PROCESS_NOTICE'; notice: LifecycleNotice };

export type ContainerCommand = Extract<
  ContainerEvent['type'],
  'START' | 'STOP' | 'PAUSE' | 'RESUME' | 'DELETE' | 'KILL' | 'EXEC' | 'PS' | 'WAIT' | 'STATS'
>;
export const containerCommands: readonly ContainerCommand[] = [
  'START', 'STOP', 'PAUSE', 'RESUME', 'DELETE', 'KILL', 'EXEC', 'PS', 'WAIT', 'STATS',
];

const notImplemented = (name: string) =>
  fromPromise<never, ContainerOpInput>(async () => {
    throw new Error(`container actor ${name} is not provided`);
  });

export const containerMachine = setup({
  types: {
    input: {} as ContainerInput,
    context: {} as ContainerContext,
    events: {} as ContainerEvent,
  },
  actors: {
    createContainer: notImplemented('createContainer') as ReturnType<typeof fromPromise<void, ContainerOpInput>>,
    startContainer: notImplemented('startContainer') as ReturnType<typeof fromPromise<ContainerStartOutput, ContainerOpInput>>,
    stopContainer: notImplemented('stopContainer') as ReturnType<typeof fromPromise<ContainerStopOutput, ContainerOpInput>>,
    pauseContainer: notImplemented('pauseContainer') as ReturnType<typeof fromPromise<void, ContainerOpInput>>,
    resumeContainer: notImplemented('resumeContainer') as ReturnType<typeof fromPromise<void, ContainerOpInput>>,
    deleteContainer: notImplemented('deleteContainer') as ReturnType<typeof fromPromise<void, ContainerOpInput>>,
    process: processMachine,
  },
  actions: {
    // Invocation errors arrive as xstate.error.actor.* events carrying `error`.
    recordError: assign({ lastError: ({ event }) => summarizeError((event as { error?: unknown }).error) }),
    clearError: assign({ lastError: undefined }),
    recordStart: assign((_, out: ContainerStartOutput) => ({ pid: out.pid, pidUnknown: !!out.pidUnknown, startedAt: out.startedAt })),
    /** A new run: the exit of the previous one no longer applies. */
    clearExit: assign({ exitStatus: undefined, exitUnknown: undefined, exitedAt: undefined }),
    clearPid: assign({ pid: 0, pidUnknown: false }),
    recordExit: assign((_, exit: ExitNews) => ({ exitStatus: exit.status, exitUnknown: !!exit.unknown, exitedAt: exit.at, pid: 0, pidUnknown: false })),
    notify: sendParent(({ context }, notice: Omit<LifecycleNotice, 'containerId'>) => ({
      type: 'CONTAINER_NOTICE' as const,
      notice: { ...notice, containerId: context.id },
    })),
    notifyExit: sendParent(({ context }) => ({
      type: 'CONTAINER_NOTICE' as const,
      notice: {
        type: 'exit',
        containerId: context.id,
        state: 'stopped',
        pid: 0,
        ...exitFields(context.exitStatus, context.exitUnknown, context.exitedAt),
      },
    })),
    spawnProcess: spawnChild('process', {
      id: ({ event }) => (event as Extract<ContainerEvent, { type: 'EXEC_ADDED' }>).execId,
      input: ({ event }) => ({ execId: (event as Extract<ContainerEvent, { type: 'EXEC_ADDED' }>).execId }),
    }),
    /** Hands the agent's news about an exec to its process actor. */
    forwardExecNews: ({ event, self }) => {
      const e = event as Extract<ContainerEvent, { type: 'EXEC_STARTED' | 'EXEC_FAILED' }>;
      const child = self.getSnapshot().children[e.execId] as { send: (e: unknown) => void } | undefined;
      child?.send(e.type === 'EXEC_STARTED' ? { type: 'STARTED', pid: e.pid, pidUnknown: e.pidUnknown } : { type: 'START_FAILED' });
    },
    relayProcessNotice: sendParent(({ context, event }) => ({
      type: 'CONTAINER_NOTICE' as const,
      notice: { ...(event as Extract<ContainerEvent, { type: 'PROCESS_NOTICE' }>).notice, containerId: context.id },
    })),
    forwardExecExit: ({ event, self }) => {
      const e = event as Extract<ContainerEvent, { type: 'EXEC_EXITED' }>;
      self.getSnapshot().children[e.execId]?.send({ type: 'EXITED', status: e.status, at: e.at, unknown: e.unknown });
    },
    loseExecs: ({ event, self }) => {
      const at = (event as { at?: string }).at ?? '';
      for (const child of Object.values(self.getSnapshot().children)) {
        (child as { send: (e: unknown) => void } | undefined)?.send({ type: 'EXITED', ...lostExit(at) });
      }
    },
    /** Marks an operation that runs without a change of state as accepted here. */
    acceptOperation: () => {},
  },
  guards: {
    hasExited: ({ context }) => context.exitStatus !== undefined,
    stopReportedExit: (_, output: ContainerStopOutput) => output.exitStatus !== undefined,
  },
}).createMachine({
  id: 'container',
  description: 'A container in a sandbox: its init process and the execs beside it.',
  context: ({ input }) => ({ sandboxId: input.sandboxId, id: input.spec.id, spec: input.spec, pid: 0 }),
  initial: 'creating',
  on: {
    PROCESS_NOTICE: { actions: 'relayProcessNotice' },
    EXEC_STARTED: { actions: 'forwardExecNews' },
    EXEC_FAILED: { actions: 'forwardExecNews' },
    EXEC_EXITED: { actions: 'forwardExecExit' },
  },
  states: {
    creating: {
      description: 'The agent prepares the container in the guest (createContainer).',
      tags: ['busy'],
      invoke: {
        id: 'createContainer',
        src: 'createContainer',
        input: ({ context }) => ({ sandboxId: context.sandboxId, containerId: context.id, spec: context.spec }),
        onDone: {
          target: 'ready',
          actions: [{ type: 'notify', params: { type: 'create', state: 'ready' } }],
        },
        onError: { target: 'deleted', actions: 'recordError' },
      },
    },
    ready: {
      description: 'Created in the guest; its process has not started.',
      on: {
        START: { target: 'starting', actions: ['clearError', 'clearExit'] },
        STOP: { target: 'stopping', actions: 'clearError' },
        DELETE: { target: 'deleting', actions: 'clearError' },
        PAUSE: { target: 'pausing', actions: 'clearError' },
        KILL: { actions: 'acceptOperation' },
        EXEC: { actions: 'acceptOperation' },
        EXEC_ADDED: { actions: 'spawnProcess' },
        WAIT: { actions: 'acceptOperation' },
        GUEST_LOST: { target: 'stopped', actions: ['loseExecs', { type: 'recordExit', params: ({ event }) => lostExit(event.at) }, 'notifyExit'] },
      },
    },
    starting: {
      description: 'The agent starts the init process (startContainer).',
      tags: ['busy'],
      invoke: {
        id: 'startContainer',
        src: 'startContainer',
        input: ({ context }) => ({ sandboxId: context.sandboxId, containerId: context.id, spec: context.spec }),
        onDone: [
          {
            // A short-lived process may exit before the start returns.
            guard: 'hasExited',
            target: 'stopped',
            actions: [
              { type: 'recordStart', params: ({ event }) => event.output },
              { type: 'notify', params: ({ event }) => ({ type: 'start', state: 'running', pid: event.output.pid, ...(event.output.pidUnknown ? { pidUnknown: true } : {}) }) },
              'notifyExit',
              'clearPid',
            ],
          },
          {
            target: 'running',
            actions: [
              { type: 'recordStart', params: ({ event }) => event.output },
              { type: 'notify', params: ({ event }) => ({ type: 'start', state: 'running', pid: event.output.pid, ...(event.output.pidUnknown ? { pidUnknown: true } : {}) }) },
            ],
          },
        ],
        onError: { target: 'stopped', actions: 'recordError' },
      },
      on: {
        PROCESS_EXITED: { actions: [{ type: 'recordExit', params: ({ event }) => event }] },
      },
    },
    running: {
      description: 'The init process runs.',
      on: {
        STOP: { target: 'stopping', actions: 'clearError' },
        PAUSE: { target: 'pausing', actions: 'clearError' },
        KILL: { actions: 'acceptOperation' },
        EXEC: { actions: 'acceptOperation' },
        PS: { actions: 'acceptOperation' },
        WAIT: { actions: 'acceptOperation' },
        STATS: { actions: 'acceptOperation' },
        EXEC_ADDED: { actions: 'spawnProcess' },
        PROCESS_EXITED: { target: 'stopped', actions: [{ type: 'recordExit', params: ({ event }) => event }, 'notifyExit'] },
        GUEST_LOST: {
          target: 'stopped',
          actions: ['loseExecs', { type: 'recordExit', params: ({ event }) => lostExit(event.at) }, 'notifyExit'],
        },
      },
    },
    pausing: {
      description: 'The agent freezes every process of the container (pauseContainer).',
      tags: ['busy'],
      invoke: {
        id: 'pauseContainer',
        src: 'pauseContainer',
        input: ({ context }) => ({ sandboxId: context.sandboxId, containerId: context.id, spec: context.spec }),
        onDone: { target: 'paused', actions: [{ type: 'notify', params: { type: 'pause', state: 'paused' } }] },
        onError: { target: 'running', actions: 'recordError' },
      },
    },
    paused: {
      description: 'Every process of the container is frozen.',
      on: {
        RESUME: { target: 'resuming', actions: 'clearError' },
        STOP: { target: 'stopping', actions: 'clearError' },
        KILL: { actions: 'acceptOperation' },
        STATS: { actions: 'acceptOperation' },
        WAIT: { actions: 'acceptOperation' },
        PROCESS_EXITED: { target: 'stopped', actions: [{ type: 'recordExit', params: ({ event }) => event }, 'notifyExit'] },
        GUEST_LOST: {
          target: 'stopped',
          actions: ['loseExecs', { type: 'recordExit', params: ({ event }) => lostExit(event.at) }, 'notifyExit'],
        },
      },
    },
    resuming: {
      description: 'The agent thaws the container (resumeContainer).',
      tags: ['busy'],
      invoke: {
        id: 'resumeContainer',
        src: 'resumeContainer',
        input: ({ context }) => ({ sandboxId: context.sandboxId, containerId: context.id, spec: context.spec }),
        onDone: { target: 'running', actions: [{ type: 'notify', params: { type: 'resume', state: 'running' } }] },
        onError: { target: 'paused', actions: 'recordError' },
      },
    },
    stopping: {
      description: 'The agent ends the init process and removes the container from the guest (stopContainer).',
      tags: ['busy'],
      invoke: {
        id: 'stopContainer',
        src: 'stopContainer',
        input: ({ context }) => ({ sandboxId: context.sandboxId, containerId: context.id, spec: context.spec }),
        onDone: [
          { guard: 'hasExited', target: 'stopped' },
          {
            guard: { type: 'stopReportedExit', params: ({ event }) => event.output },
            target: 'stopped',
            actions: [
              {
                type: 'recordExit',
                params: ({ event }) =>
                  event.output.exitStatus === undefined || event.output.exitStatusUnknown
                    ? lostExit(event.output.exitedAt ?? '')
                    : { status: event.output.exitStatus, at: event.output.exitedAt ?? '' },
              },
              'notifyExit',
            ],
          },
          // Never started: nothing exited.
          { target: 'stopped' },
        ],
        onError: { target: 'stopped', actions: 'recordError' },
      },
      on: {
        // The exit the stop caused may arrive before the stop returns.
        PROCESS_EXITED: { guard: not('hasExited'), actions: [{ type: 'recordExit', params: ({ event }) => event }, 'notifyExit'] },
        GUEST_LOST: {
          guard: not('hasExited'),
          actions: ['loseExecs', { type: 'recordExit', params: ({ event }) => lostExit(event.at) }, 'notifyExit'],
        },
      },
    },
    stopped: {
      description: 'The init process has exited; the container can start again or be deleted.',
      on: {
        START: { target: 'starting', actions: ['clearError', 'clearExit'] },
        STOP: { actions: 'clearError' },
        DELETE: { target: 'deleting', actions: 'clearError' },
        WAIT: { actions: 'acceptOperation' },
      },
    },
    deleting: {
      description: 'Host-side resources of the container are released (deleteContainer).',
      tags: ['busy'],
      invoke: {
        id: 'deleteContainer',
        src: 'deleteContainer',
        input: ({ context }) => ({ sandboxId: context.sandboxId, containerId: context.id, spec: context.spec }),
        onDone: { target: 'deleted', actions: [{ type: 'notify', params: { type: 'delete', state: 'deleted' } }] },
        onError: { target: 'stopped', actions: 'recordError' },
      },
    },
    deleted: {
      description: 'Gone. Final.',
      type: 'final',
    },
  },
});

export type ContainerActorRef = ActorRefFrom<typeof containerMachine>;
