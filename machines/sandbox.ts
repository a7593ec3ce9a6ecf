// The sandbox statechart: one root actor per sandbox, its containers as children.
//
// Stable states are the reference's (ready, running, paused, stopped) plus `failed`
// (the guest died or stopped answering) and the final `deleted`. Every -ing state runs
// one named operation, provided by actors/. Status is a read of the snapshot, not an
// event. A command is accepted only by the states
// that list it, so `snapshot.can(command)` is the precondition check; a refused command
// changes nothing. Every lifecycle notice, the containers' included, is numbered here
// (a per-sandbox sequence) and emitted as a `lifecycle` event for the publisher.
import { assign, enqueueActions, fromPromise, setup, spawnChild, stopChild, type ActorRefFrom, type SnapshotFrom } from 'xstate';
import { containerMachine, type ContainerActorRef } from './container.js';
import { monitorMachine } from './monitor.js';
import { OOM_KILLED, summarizeError, type ContainerNotice, type ErrorSummary, type ExecNotice, type FailureReason, type SandboxNotice } from './lifecycle.js';
import type { ContainerSpec, SandboxSpec } from './specs.js';

export interface SandboxInput {
  spec: SandboxSpec;
  createdAt: string;
  /** Sequence number of the last event already published (0 for a new sandbox). */
  eventSeq?: number;
  /** Deadline of the create command (ms since the epoch). */
  deadline?: number;
}

export interface SandboxFailure {
  reason: FailureReason | 'delete-failed';
  message: string;
  at: string;
  exitStatus?: number;
}

export interface SandboxContext {
  id: string;
  spec: SandboxSpec;
  createdAt: string;
  eventSeq: number;
  /** Live containers, in creation order. */
  containerIds: string[];
  failure?: SandboxFailure;
  lastError?: ErrorSummary;
  /** Deadline of the command the sandbox works on (ms since the epoch). */
  deadline?: number;
}

/** What every sandbox-level operation receives. */
export interface SandboxOpInput {
  sandboxId: string;
  spec: SandboxSpec;
  deadline?: number;
}

export interface OnlineCpuMemInput extends SandboxOpInput {
  cpus: number;
}

type Deadline = { deadline?: number };

export type SandboxEvent =
  | ({ type: 'START' } & Deadline)
  | ({ type: 'STOP' } & Deadline)
  | ({ type: 'PAUSE' } & Deadline)
  | ({ type: 'RESUME' } & Deadline)
  | ({ type: 'DELETE' } & Deadline)
  | ({ type: 'ONLINE_CPU_MEM'; opId: string; cpus: number } & Deadline)
  | ({ type: 'CREATE_CONTAINER'; spec: ContainerSpec } & Deadline)
  | { type: 'GUEST_FAILED'; reason: FailureReason; message: string; at: string; exitStatus?: number }
  /** A restarted host restored the sandbox from its record and reached its guest again. */
  | { type: 'REATTACHED' }
  | { type: 'CONTAINER_NOTICE'; notice: ContainerNotice | ExecNotice };

export type SandboxCommand = Extract<
  SandboxEvent['type'],
  'START' | 'STOP' | 'PAUSE' | 'RESUME' | 'DELETE' | 'ONLINE_CPU_MEM' | 'CREATE_CONTAINER'
>;
export const sandboxCommands: readonly SandboxCommand[] = [
  'START', 'STOP', 'PAUSE', 'RESUME', 'DELETE', 'ONLINE_CPU_MEM', 'CREATE_CONTAINER',
];

export interface LifecycleEmitted {
  type: 'lifecycle';
  seq: number;
  notice: SandboxNotice | ContainerNotice | ExecNotice;
}

/** Invocations are named op.<name>; '.' is not allowed in container ids, so they never collide. */
export const OP_PREFIX = 'op.';

const operation = (name: string) =>
  fromPromise<void, SandboxOpInput>(async () => {
    throw new Error(`sandbox operation ${name} is not provided`);
  });

const opInput = ({ context }: { context: SandboxContext }): SandboxOpInput => ({ sandboxId: context.id, spec: context.spec, deadline: context.deadline });

export const sandboxMachine = setup({
  types: {
    input: {} as SandboxInput,
    context: {} as SandboxContext,
    events: {} as SandboxEvent,
    emitted: {} as LifecycleEmitted,
  },
  actors: {
    createSandbox: operation('createSandbox'),
    bootGuest: operation('bootGuest'),
    startSandbox: operation('startSandbox'),
    pauseSandbox: operation('pauseSandbox'),
    resumeSandbox: operation('resumeSandbox'),
    stopSandbox: operation('stopSandbox'),
    deleteSandbox: operation('deleteSandbox'),
    onlineCpuMem: fromPromise<void, OnlineCpuMemInput>(async () => {
      throw new Error('sandbox operation onlineCpuMem is not provided');
    }),
    container: containerMachine,
    monitor: monitorMachine,
  },
  actions: {
    recordError: assign({ lastError: ({ event }) => summarizeError((event as { error?: unknown }).error) }),
    clearError: assign({ lastError: undefined }),
    /** The deadline of the command that moves the sandbox, for its operation. */
    takeDeadline: assign({ deadline: ({ event }) => (event as Deadline).deadline }),
    /** Numbers a notice and emits it; the only place the event sequence moves. */
    announce: enqueueActions(({ context, enqueue }, notice: SandboxNotice) => {
      const seq = context.eventSeq + 1;
      enqueue.assign({ eventSeq: seq });
      enqueue.emit({ type: 'lifecycle', seq, notice });
    }),
    spawnContainer: enqueueActions(({ context, event, enqueue }) => {
      const { spec, deadline } = event as Extract<SandboxEvent, { type: 'CREATE_CONTAINER' }>;
      enqueue.spawnChild('container', { id: spec.id, input: { sandboxId: context.id, spec, deadline } });
      enqueue.assign({ containerIds: [...context.containerIds, spec.id] });
    }),
    spawnSpecContainers: enqueueActions(({ context, enqueue }) => {
      for (const spec of context.spec.containers) {
        enqueue.spawnChild('container', { id: spec.id, input: { sandboxId: context.id, spec, deadline: context.deadline } });
      }
      enqueue.assign({ containerIds: context.spec.containers.map((c) => c.id) });
    }),
    /** A container child reached its final state (deleted, or its creation failed). */
    forgetContainer: assign({
      containerIds: ({ context, event }) => {
        const actorId = (event as { actorId?: string }).actorId;
        return context.containerIds.filter((id) => id !== actorId);
      },
    }),
    recordFailure: assign({
      failure: ({ event }) => {
        const e = event as Extract<SandboxEvent, { type: 'GUEST_FAILED' }>;
        return { reason: e.reason, message: e.message, at: e.at, exitStatus: e.exitStatus };
      },
    }),
    recordDeleteFailure: assign({
      failure: ({ event }) => ({
        reason: 'delete-failed' as const,
        message: summarizeError((event as { error?: unknown }).error).message,
        at: '',
      }),
    }),
    /** Every container still up learns that its guest is gone (each reports exit 255). */
    loseContainers: ({ context, self }) => {
      for (const ref of containerRefs(self.getSnapshot() as SandboxSnapshot)) {
        ref.send({ type: 'GUEST_LOST', at: context.failure?.at ?? '' });
      }
    },
    /** A container's notice, numbered; an exit (of an init or an exec) the OOM killer caused comes after an `oom` (containerd's /tasks/oom). */
    relayContainerNotice: enqueueActions(({ context, event, enqueue }) => {
      const notice = (event as Extract<SandboxEvent, { type: 'CONTAINER_NOTICE' }>).notice;
      let seq = context.eventSeq;
      if (notice.type === 'exit' && notice.reason === OOM_KILLED) {
        const oom = { type: 'oom' as const, containerId: notice.containerId, state: notice.state, message: notice.message ?? '' };
        enqueue.emit({ type: 'lifecycle', seq: ++seq, notice: notice.execId ? { ...oom, execId: notice.execId } : oom });
      }
      enqueue.emit({ type: 'lifecycle', seq: ++seq, notice });
      enqueue.assign({ eventSeq: seq });
    }),
    onlineCpuMem: spawnChild('onlineCpuMem', {
      id: ({ event }) => (event as Extract<SandboxEvent, { type: 'ONLINE_CPU_MEM' }>).opId,
      input: ({ context, event }) => {
        const e = event as Extract<SandboxEvent, { type: 'ONLINE_CPU_MEM' }>;
        return { sandboxId: context.id, spec: context.spec, cpus: e.cpus, deadline: e.deadline };
      },
    }),
    /** A finished operation child is let go; a finished container is forgotten. */
    releaseChild: stopChild(({ event }) => (event as unknown as { actorId: string }).actorId),
  },
  guards: {
    containerIdFree: ({ context, event }) =>
      !context.containerIds.includes((event as Extract<SandboxEvent, { type: 'CREATE_CONTAINER' }>).spec.id),
  },
}).createMachine({
  id: 'sandbox',
  description: 'A sandbox: an isolated guest with an agent, holding containers.',
  context: ({ input }) => ({
    id: input.spec.id,
    spec: input.spec,
    createdAt: input.createdAt,
    eventSeq: input.eventSeq ?? 0,
    containerIds: [],
    deadline: input.deadline,
  }),
  initial: 'creating',
  on: {
    // Container notices are numbered in the same sequence as the sandbox's own.
    CONTAINER_NOTICE: { actions: ['relayContainerNotice'] },
    'xstate.done.actor.*': { actions: ['forgetContainer', 'releaseChild'] },
    'xstate.error.actor.*': { actions: 'releaseChild' },
  },
  states: {
    creating: {
      description: 'The guest boots, the agent connects and sets the sandbox up (createSandbox).',
      tags: ['busy'],
      invoke: {
        id: 'op.createSandbox',
        src: 'createSandbox',
        input: opInput,
        onDone: {
          target: 'ready',
          actions: [{ type: 'announce', params: { type: 'create', state: 'ready' } }, 'spawnSpecContainers'],
        },
        onError: { target: 'deleted', actions: 'recordError' },
      },
    },
    ready: {
      description: 'Created: the guest runs, no container has been started by the sandbox yet.',
      on: {
        START: { target: 'starting', actions: ['clearError', 'takeDeadline'] },
        STOP: { target: 'stopping', actions: ['clearError', 'takeDeadline'] },
        DELETE: { target: 'deleting', actions: ['clearError', 'takeDeadline'] },
        CREATE_CONTAINER: { guard: 'containerIdFree', actions: ['clearError', 'spawnContainer'] },
        ONLINE_CPU_MEM: { actions: 'onlineCpuMem' },
        GUEST_FAILED: { target: 'failed', actions: 'recordFailure' },
      },
    },
    booting: {
      description: 'A stopped sandbox boots its guest again before starting (bootGuest).',
      tags: ['busy'],
      invoke: {
        id: 'op.bootGuest',
        src: 'bootGuest',
        input: opInput,
        onDone: { target: 'starting' },
        onError: { target: 'stopped', actions: 'recordError' },
      },
    },
    starting: {
      description: 'Every ready or stopped container is started, in creation order (startSandbox).',
      tags: ['busy'],
      invoke: {
        id: 'op.startSandbox',
        src: 'startSandbox',
        input: opInput,
        onDone: { target: 'running', actions: [{ type: 'announce', params: { type: 'start', state: 'running' } }] },
        // As in the reference: the first container that fails aborts, the sandbox runs.
        onError: {
          target: 'running',
          actions: ['recordError', { type: 'announce', params: { type: 'start', state: 'running' } }],
        },
      },
    },
    running: {
      description: 'Started: containers may run, the monitor watches the guest.',
      invoke: {
        id: 'op.monitor',
        src: 'monitor',
        input: ({ context }) => ({
          sandboxId: context.id,
          intervalMs: context.spec.monitor.intervalMs,
          deadlineMs: context.spec.monitor.deadlineMs,
        }),
      },
      on: {
        STOP: { target: 'stopping', actions: ['clearError', 'takeDeadline'] },
        PAUSE: { target: 'pausing', actions: ['clearError', 'takeDeadline'] },
        CREATE_CONTAINER: { guard: 'containerIdFree', actions: ['clearError', 'spawnContainer'] },
        ONLINE_CPU_MEM: { actions: 'onlineCpuMem' },
        GUEST_FAILED: { target: 'failed', actions: 'recordFailure' },
        // A restored snapshot keeps the monitor's state but not its timer: entering
        // running again starts a fresh monitor.
        REATTACHED: { target: 'running', reenter: true },
      },
    },
    pausing: {
      description: 'Every running container is frozen (pauseSandbox).',
      tags: ['busy'],
      invoke: {
        id: 'op.pauseSandbox',
        src: 'pauseSandbox',
        input: opInput,
        onDone: { target: 'paused', actions: [{ type: 'announce', params: { type: 'pause', state: 'paused' } }] },
        onError: { target: 'running', actions: 'recordError' },
      },
    },
    paused: {
      description: 'Every container is frozen; the monitor is off.',
      on: {
        RESUME: { target: 'resuming', actions: ['clearError', 'takeDeadline'] },
        STOP: { target: 'stopping', actions: ['clearError', 'takeDeadline'] },
        DELETE: { target: 'deleting', actions: ['clearError', 'takeDeadline'] },
        GUEST_FAILED: { target: 'failed', actions: 'recordFailure' },
      },
    },
    resuming: {
      description: 'Every paused container is thawed (resumeSandbox).',
      tags: ['busy'],
      invoke: {
        id: 'op.resumeSandbox',
        src: 'resumeSandbox',
        input: opInput,
        onDone: { target: 'running', actions: [{ type: 'announce', params: { type: 'resume', state: 'running' } }] },
        onError: { target: 'paused', actions: 'recordError' },
      },
    },
    stopping: {
      description: 'Every container is stopped, then the guest is torn down (stopSandbox).',
      tags: ['busy'],
      invoke: {
        id: 'op.stopSandbox',
        src: 'stopSandbox',
        input: opInput,
        onDone: { target: 'stopped', actions: [{ type: 'announce', params: { type: 'stop', state: 'stopped' } }] },
        onError: {
          target: 'stopped',
          actions: ['recordError', { type: 'announce', params: { type: 'stop', state: 'stopped' } }],
        },
      },
    },
    stopped: {
      description: 'The guest is down; the sandbox can start again or be deleted.',
      on: {
        START: { target: 'booting', actions: ['clearError', 'takeDeadline'] },
        DELETE: { target: 'deleting', actions: ['clearError', 'takeDeadline'] },
      },
    },
    failed: {
      description: 'The guest died or stopped answering. Kept for inspection until deleted.',
      entry: [
        'loseContainers',
        {
          type: 'announce',
          params: ({ context }) => ({
            type: 'fail',
            state: 'failed',
            reason: context.failure?.reason ?? 'agent-unreachable',
            message: context.failure?.message ?? '',
            ...(context.failure?.exitStatus === undefined ? {} : { exitStatus: context.failure.exitStatus }),
          }),
        },
      ],
      on: {
        DELETE: { target: 'deleting', actions: ['clearError', 'takeDeadline'] },
      },
    },
    deleting: {
      description: 'Containers are deleted and every host resource is released (deleteSandbox).',
      tags: ['busy'],
      invoke: {
        id: 'op.deleteSandbox',
        src: 'deleteSandbox',
        input: opInput,
        onDone: { target: 'deleted', actions: [{ type: 'announce', params: { type: 'delete', state: 'deleted' } }] },
        onError: { target: 'failed', actions: ['recordError', 'recordDeleteFailure'] },
      },
    },
    deleted: {
      description: 'Gone. Final.',
      type: 'final',
    },
  },
});

export type SandboxActorRef = ActorRefFrom<typeof sandboxMachine>;
export type SandboxSnapshot = SnapshotFrom<typeof sandboxMachine>;

/** The container children of a sandbox (its invocations filtered out). */
export function containerRefs(snapshot: { children: Record<string, unknown> }): ContainerActorRef[] {
  const refs: ContainerActorRef[] = [];
  for (const [id, ref] of Object.entries(snapshot.children)) {
    if (ref && !id.startsWith(OP_PREFIX)) refs.push(ref as ContainerActorRef);
  }
  return refs;
}

export function containerRef(snapshot: { children: Record<string, unknown> }, cid: string): ContainerActorRef | undefined {
  return cid.startsWith(OP_PREFIX) ? undefined : (snapshot.children[cid] as ContainerActorRef | undefined);
}
