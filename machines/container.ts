// The container statechart: one per container, spawned as a child of its sandbox.
//
// Stable states follow the reference's table (ready, running, paused, stopped); the
// -ing states run one named agent operation each. Commands that do not change state
// (kill, exec, ps, stats, resize) are accepted only in the states listed here, so
// `snapshot.can()` answers every precondition and the exported chart shows them; each
// runs as a child actor of the container (an exec is a process actor, the others are
// operations named op.<name>.<n>), so it stops with the container. Wait and logs only
// read what the chart records. Lifecycle notices go to the parent sandbox, which numbers
// and emits them. Internal child ids start with "op." — a "." is not allowed in ids a
// user chooses, so they never collide with exec ids.
import { assign, fromPromise, not, sendParent, setup, spawnChild, stopChild, type ActorRefFrom } from 'xstate';
import type { ContainerSpec, ProcessSpec } from './specs.js';
import { exitFields, lostExit as lost, summarizeError, type ContainerNoticeDraft, type ErrorSummary, type ExecNoticeDraft, type ExitNews } from './lifecycle.js';
import { processMachine } from './process.js';

export interface ContainerInput {
  sandboxId: string;
  spec: ContainerSpec;
  /** Deadline of the command that creates it (ms since the epoch). */
  deadline?: number;
}

/** How many exits of finished execs a container keeps for `wait`. */
export const MAX_REMEMBERED_EXEC_EXITS = 256;

export interface ExecExit {
  status: number;
  at: string;
  /** Nobody can tell the status (status says 255). */
  unknown?: boolean;
  /** OOMKilled, with the limit in the message. */
  reason?: string;
  message?: string;
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
  /** Why the init process exited, when known beyond its status (OOMKilled), and in words. */
  exitReason?: string;
  exitMessage?: string;
  lastError?: ErrorSummary;
  /** Deadline of the command the container works on (ms since the epoch). */
  deadline?: number;
  /** Execs added and not yet ended. */
  execIds: string[];
  /** Exits of ended execs, oldest first, at most MAX_REMEMBERED_EXEC_EXITS. */
  execExits: Record<string, ExecExit>;
}

/** What every container agent operation receives. */
export interface ContainerOpInput {
  sandboxId: string;
  containerId: string;
  spec: ContainerSpec;
  deadline?: number;
}

export interface KillInput extends ContainerOpInput {
  signal: number;
  all: boolean;
}

export interface ResizeInput extends ContainerOpInput {
  /** The process whose terminal is resized: the container id for its init process. */
  execId: string;
  rows: number;
  cols: number;
}

export interface PsInput extends ContainerOpInput {
  format: 'json' | 'table';
  args: string[];
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

type Deadline = { deadline?: number };

export type ContainerEvent =
  | ({ type: 'START' } & Deadline)
  | ({ type: 'STOP' } & Deadline)
  | ({ type: 'PAUSE' } & Deadline)
  | ({ type: 'RESUME' } & Deadline)
  | ({ type: 'DELETE' } & Deadline)
  | ({ type: 'KILL'; opId: string; signal: number; all: boolean } & Deadline)
  | ({ type: 'EXEC'; execId: string; process: ProcessSpec } & Deadline)
  | ({ type: 'PS'; opId: string; format: 'json' | 'table'; args: string[] } & Deadline)
  | ({ type: 'RESIZE'; opId: string; execId: string; rows: number; cols: number } & Deadline)
  | ({ type: 'STATS'; opId: string } & Deadline)
  | { type: 'WAIT' }
  | { type: 'LOGS' }
  | ({ type: 'PROCESS_EXITED' } & ExitNews)
  | { type: 'GUEST_LOST'; at: string }
  | ({ type: 'EXEC_EXITED'; execId: string } & ExitNews)
  | { type: 'PROCESS_NOTICE'; notice: ExecNoticeDraft };

export type ContainerCommand = Extract<
  ContainerEvent['type'],
  'START' | 'STOP' | 'PAUSE' | 'RESUME' | 'DELETE' | 'KILL' | 'EXEC' | 'PS' | 'WAIT' | 'STATS' | 'LOGS' | 'RESIZE'
>;
export const containerCommands: readonly ContainerCommand[] = [
  'START', 'STOP', 'PAUSE', 'RESUME', 'DELETE', 'KILL', 'EXEC', 'PS', 'WAIT', 'STATS', 'LOGS', 'RESIZE',
];

/** Prefix of every child id the container gives itself (invocations and operations). */
export const CONTAINER_OP_PREFIX = 'op.';

const notImplemented = (name: string) =>
  fromPromise<never, ContainerOpInput>(async () => {
    throw new Error(`container actor ${name} is not provided`);
  });

const opInput = ({ context }: { context: ContainerContext }): ContainerOpInput => ({
  sandboxId: context.sandboxId,
  containerId: context.id,
  spec: context.spec,
  deadline: context.deadline,
});

const lostExit = ({ event }: { event: ContainerEvent }) => lost((event as { at: string }).at);

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
    killContainer: notImplemented('killContainer') as ReturnType<typeof fromPromise<void, KillInput>>,
    listProcesses: notImplemented('listProcesses') as ReturnType<typeof fromPromise<string, PsInput>>,
    resizeTerminal: notImplemented('resizeTerminal') as ReturnType<typeof fromPromise<void, ResizeInput>>,
    containerStats: notImplemented('containerStats') as ReturnType<typeof fromPromise<unknown, ContainerOpInput>>,
    process: processMachine,
  },
  actions: {
    // Invocation errors arrive as xstate.error.actor.* events carrying `error`.
    recordError: assign({ lastError: ({ event }) => summarizeError((event as { error?: unknown }).error) }),
    clearError: assign({ lastError: undefined }),
    /** The deadline of the command that moves the container, for its operation. */
    takeDeadline: assign({ deadline: ({ event }) => (event as Deadline).deadline }),
    recordStart: assign((_, out: ContainerStartOutput) => ({ pid: out.pid, pidUnknown: !!out.pidUnknown, startedAt: out.startedAt })),
    /** A new run: the exit of the previous one no longer applies. */
    clearExit: assign({ exitStatus: undefined, exitUnknown: undefined, exitedAt: undefined, exitReason: undefined, exitMessage: undefined }),
    clearPid: assign({ pid: 0, pidUnknown: false }),
    recordExit: assign((_, exit: ExitNews) => ({
      exitStatus: exit.status, exitUnknown: !!exit.unknown, exitedAt: exit.at, exitReason: exit.reason, exitMessage: exit.message, pid: 0, pidUnknown: false,
    })),
    notify: sendParent(({ context }, notice: ContainerNoticeDraft) => ({
      type: 'CONTAINER_NOTICE' as const,
      notice: { ...notice, containerId: context.id },
    })),
    /** The exit, with its reason when known (the sandbox announces an OOMKilled one after an `oom`). */
    notifyExit: sendParent(({ context }) => ({
      type: 'CONTAINER_NOTICE' as const,
      notice: {
        type: 'exit' as const,
        containerId: context.id,
        state: 'stopped',
        pid: 0,
        ...exitFields(context.exitStatus, context.exitUnknown, context.exitedAt),
        ...(context.exitReason ? { reason: context.exitReason, message: context.exitMessage ?? '' } : {}),
      },
    })),
    /** An exec: its process actor, which starts it in the guest. */
    spawnProcess: spawnChild('process', {
      id: ({ event }) => (event as Extract<ContainerEvent, { type: 'EXEC' }>).execId,
      input: ({ context, event }) => {
        const e = event as Extract<ContainerEvent, { type: 'EXEC' }>;
        return { sandboxId: context.sandboxId, containerId: context.id, execId: e.execId, process: e.process, deadline: e.deadline };
      },
    }),
    trackExec: assign({ execIds: ({ context, event }) => [...context.execIds, (event as Extract<ContainerEvent, { type: 'EXEC' }>).execId] }),
    killProcesses: spawnChild('killContainer', {
      id: ({ event }) => (event as Extract<ContainerEvent, { type: 'KILL' }>).opId,
      input: ({ context, event }) => {
        const e = event as Extract<ContainerEvent, { type: 'KILL' }>;
        return { ...opInput({ context }), signal: e.signal, all: e.all, deadline: e.deadline };
      },
    }),
    listProcesses: spawnChild('listProcesses', {
      id: ({ event }) => (event as Extract<ContainerEvent, { type: 'PS' }>).opId,
      input: ({ context, event }) => {
        const e = event as Extract<ContainerEvent, { type: 'PS' }>;
        return { ...opInput({ context }), format: e.format, args: e.args, deadline: e.deadline };
      },
    }),
    resizeTerminal: spawnChild('resizeTerminal', {
      id: ({ event }) => (event as Extract<ContainerEvent, { type: 'RESIZE' }>).opId,
      input: ({ context, event }) => {
        const e = event as Extract<ContainerEvent, { type: 'RESIZE' }>;
        return { ...opInput({ context }), execId: e.execId, rows: e.rows, cols: e.cols, deadline: e.deadline };
      },
    }),
    readStats: spawnChild('containerStats', {
      id: ({ event }) => (event as Extract<ContainerEvent, { type: 'STATS' }>).opId,
      input: ({ context, event }) => ({ ...opInput({ context }), deadline: (event as Deadline).deadline }),
    }),
    /** A finished child (operation or process) is let go; an ended exec leaves its exit. */
    releaseChild: stopChild(({ event }) => (event as unknown as { actorId: string }).actorId),
    relayProcessNotice: sendParent(({ context, event }) => ({
      type: 'CONTAINER_NOTICE' as const,
      notice: { ...(event as Extract<ContainerEvent, { type: 'PROCESS_NOTICE' }>).notice, containerId: context.id },
    })),
    recordExecExit: assign(({ context, event }) => {
      const notice = (event as Extract<ContainerEvent, { type: 'PROCESS_NOTICE' }>).notice;
      if (notice.type !== 'exit') return {};
      const execExits = { ...context.execExits, [notice.execId]: { status: notice.exitStatus, at: notice.exitedAt, ...(notice.exitStatusUnknown ? { unknown: true } : {}), ...(notice.reason ? { reason: notice.reason, message: notice.message ?? '' } : {}) } };
      const ids = Object.keys(execExits);
      for (const old of ids.slice(0, Math.max(0, ids.length - MAX_REMEMBERED_EXEC_EXITS))) delete execExits[old];
      return { execExits, execIds: context.execIds.filter((id) => id !== notice.execId) };
    }),
    forgetFailedExec: assign({
      execIds: ({ context, event }) => context.execIds.filter((id) => id !== (event as { actorId?: string }).actorId),
    }),
    forwardExecExit: ({ event, self }) => {
      const e = event as Extract<ContainerEvent, { type: 'EXEC_EXITED' }>;
      self.getSnapshot().children[e.execId]?.send({ type: 'EXITED', status: e.status, at: e.at, unknown: e.unknown, reason: e.reason, message: e.message });
    },
    loseExecs: ({ event, self }) => {
      const at = (event as { at?: string }).at ?? '';
      for (const [id, child] of Object.entries(self.getSnapshot().children)) {
        if (!id.startsWith(CONTAINER_OP_PREFIX)) (child as { send: (e: unknown) => void } | undefined)?.send({ type: 'EXITED', ...lost(at) });
      }
    },
    /** Marks a read (wait, logs) as allowed here: it changes nothing. */
    acceptRead: () => {},
  },
  guards: {
    hasExited: ({ context }) => context.exitStatus !== undefined,
    // Named (not an inline `not()`), so the exported chart says which guard it is.
    exitPending: not('hasExited'),
    stopReportedExit: (_, output: ContainerStopOutput) => output.exitStatus !== undefined,
    /** An exec id in use (or recently ended) in this container cannot be added again. */
    execIdFree: ({ context, event }) => {
      const id = (event as Extract<ContainerEvent, { type: 'EXEC' }>).execId;
      return id !== context.id && !context.execIds.includes(id) && !(id in context.execExits);
    },
  },
}).createMachine({
  id: 'container',
  description: 'A container in a sandbox: its init process and the execs beside it.',
  context: ({ input }) => ({
    sandboxId: input.sandboxId,
    id: input.spec.id,
    spec: input.spec,
    pid: 0,
    deadline: input.deadline,
    execIds: [],
    execExits: {},
  }),
  initial: 'creating',
  on: {
    PROCESS_NOTICE: { actions: ['relayProcessNotice', 'recordExecExit'] },
    EXEC_EXITED: { actions: 'forwardExecExit' },
    LOGS: { actions: 'acceptRead' },
    'xstate.done.actor.*': { actions: ['forgetFailedExec', 'releaseChild'] },
    'xstate.error.actor.*': { actions: 'releaseChild' },
  },
  states: {
    creating: {
      description: 'The agent prepares the container in the guest (createContainer).',
      tags: ['busy'],
      invoke: {
        id: 'op.createContainer',
        src: 'createContainer',
        input: opInput,
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
        START: { target: 'starting', actions: ['clearError', 'clearExit', 'takeDeadline'] },
        STOP: { target: 'stopping', actions: ['clearError', 'takeDeadline'] },
        DELETE: { target: 'deleting', actions: ['clearError', 'takeDeadline'] },
        PAUSE: { target: 'pausing', actions: ['clearError', 'takeDeadline'] },
        KILL: { actions: 'killProcesses' },
        EXEC: { guard: 'execIdFree', actions: ['trackExec', 'spawnProcess'] },
        WAIT: { actions: 'acceptRead' },
        GUEST_LOST: { target: 'stopped', actions: ['loseExecs', { type: 'recordExit', params: lostExit }, 'notifyExit'] },
      },
    },
    starting: {
      description: 'The agent starts the init process (startContainer).',
      tags: ['busy'],
      invoke: {
        id: 'op.startContainer',
        src: 'startContainer',
        input: opInput,
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
        STOP: { target: 'stopping', actions: ['clearError', 'takeDeadline'] },
        PAUSE: { target: 'pausing', actions: ['clearError', 'takeDeadline'] },
        KILL: { actions: 'killProcesses' },
        EXEC: { guard: 'execIdFree', actions: ['trackExec', 'spawnProcess'] },
        PS: { actions: 'listProcesses' },
        WAIT: { actions: 'acceptRead' },
        STATS: { actions: 'readStats' },
        RESIZE: { actions: 'resizeTerminal' },
        PROCESS_EXITED: { target: 'stopped', actions: [{ type: 'recordExit', params: ({ event }) => event }, 'notifyExit'] },
        GUEST_LOST: { target: 'stopped', actions: ['loseExecs', { type: 'recordExit', params: lostExit }, 'notifyExit'] },
      },
    },
    pausing: {
      description: 'The agent freezes every process of the container (pauseContainer).',
      tags: ['busy'],
      invoke: {
        id: 'op.pauseContainer',
        src: 'pauseContainer',
        input: opInput,
        onDone: { target: 'paused', actions: [{ type: 'notify', params: { type: 'pause', state: 'paused' } }] },
        onError: { target: 'running', actions: 'recordError' },
      },
    },
    paused: {
      description: 'Every process of the container is frozen.',
      on: {
        RESUME: { target: 'resuming', actions: ['clearError', 'takeDeadline'] },
        STOP: { target: 'stopping', actions: ['clearError', 'takeDeadline'] },
        KILL: { actions: 'killProcesses' },
        STATS: { actions: 'readStats' },
        RESIZE: { actions: 'resizeTerminal' },
        WAIT: { actions: 'acceptRead' },
        PROCESS_EXITED: { target: 'stopped', actions: [{ type: 'recordExit', params: ({ event }) => event }, 'notifyExit'] },
        GUEST_LOST: { target: 'stopped', actions: ['loseExecs', { type: 'recordExit', params: lostExit }, 'notifyExit'] },
      },
    },
    resuming: {
      description: 'The agent thaws the container (resumeContainer).',
      tags: ['busy'],
      invoke: {
        id: 'op.resumeContainer',
        src: 'resumeContainer',
        input: opInput,
        onDone: { target: 'running', actions: [{ type: 'notify', params: { type: 'resume', state: 'running' } }] },
        onError: { target: 'paused', actions: 'recordError' },
      },
    },
    stopping: {
      description: 'The agent ends the init process and removes the container from the guest (stopContainer).',
      tags: ['busy'],
      invoke: {
        id: 'op.stopContainer',
        src: 'stopContainer',
        input: opInput,
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
                    ? lost(event.output.exitedAt ?? '')
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
        PROCESS_EXITED: { guard: 'exitPending', actions: [{ type: 'recordExit', params: ({ event }) => event }, 'notifyExit'] },
        GUEST_LOST: { guard: 'exitPending', actions: ['loseExecs', { type: 'recordExit', params: lostExit }, 'notifyExit'] },
      },
    },
    stopped: {
      description: 'The init process has exited; the container can start again or be deleted.',
      on: {
        START: { target: 'starting', actions: ['clearError', 'clearExit', 'takeDeadline'] },
        STOP: { actions: 'clearError' },
        DELETE: { target: 'deleting', actions: ['clearError', 'takeDeadline'] },
        WAIT: { actions: 'acceptRead' },
      },
    },
    deleting: {
      description: 'Host-side resources of the container are released (deleteContainer).',
      tags: ['busy'],
      invoke: {
        id: 'op.deleteContainer',
        src: 'deleteContainer',
        input: opInput,
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
