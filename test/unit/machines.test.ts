// Model-based tests of the lifecycle statecharts: every state is reachable through the
// graph of commands and operation outcomes, and in every state each command is either
// allowed by the reference's rules or refused without any change of state.
import { describe, expect, it } from 'vitest';
import { getShortestPaths } from 'xstate/graph';
import { getNextSnapshot, createActor, fromPromise, setup, waitFor, type ActorRef, type AnyStateMachine, type Snapshot } from 'xstate';
import { monitorMachine } from '../../machines/monitor.js';
import { sandboxMachine, sandboxCommands, type SandboxEvent } from '../../machines/sandbox.js';
import { containerMachine, containerCommands, type ContainerActorRef, type ContainerEvent } from '../../machines/container.js';
import { agentMachine } from '../../machines/agent.js';
import { processMachine, type ProcessEvent } from '../../machines/process.js';
import { TRANSITION_TABLE, validTransition } from '../../machines/lifecycle.js';
import type { SandboxSpec, ContainerSpec } from '../../machines/specs.js';

const containerSpec: ContainerSpec = { id: 'c1', args: ['true'], env: [], cwd: '', user: '', terminal: false, rootfs: '', annotations: {} };
const spec: SandboxSpec = {
  id: 's1', agent: 'noop', agentConfig: {}, backend: 'none', hostname: 's1',
  monitor: { intervalMs: 1000, deadlineMs: 2000, policy: 'keep' }, annotations: {}, containers: [],
};

const done = (id: string) => ({ type: `xstate.done.actor.${id}`, output: undefined, actorId: id }) as never;
const fail = (id: string) => ({ type: `xstate.error.actor.${id}`, error: { code: 'Internal', message: 'boom' }, actorId: id }) as never;

const sandboxOps = ['createSandbox', 'bootGuest', 'startSandbox', 'pauseSandbox', 'resumeSandbox', 'stopSandbox', 'deleteSandbox'];
/** A whole command event of each type (some carry what their operation needs). */
const sandboxCommand = (type: (typeof sandboxCommands)[number]): SandboxEvent =>
  type === 'CREATE_CONTAINER' ? { type, spec: containerSpec } : type === 'ONLINE_CPU_MEM' ? { type, opId: 'op.online.1', cpus: 1 } : ({ type } as SandboxEvent);
const containerCommand = (type: (typeof containerCommands)[number]): ContainerEvent => {
  switch (type) {
    case 'KILL':
      return { type, opId: 'op.kill.1', signal: 9, all: false };
    case 'EXEC':
      return { type, execId: 'e1', process: { args: ['true'], env: [], cwd: '', user: '', terminal: false } };
    case 'PS':
      return { type, opId: 'op.ps.1', format: 'json', args: [] };
    case 'STATS':
      return { type, opId: 'op.stats.1' };
    case 'RESIZE':
      return { type, opId: 'op.resize.1', execId: 'c1', rows: 24, cols: 80 };
    default:
      return { type } as ContainerEvent;
  }
};
const sandboxEvents: SandboxEvent[] = [
  ...sandboxCommands.map(sandboxCommand),
  { type: 'GUEST_FAILED', reason: 'guest-exited', message: 'killed', at: 't' },
  ...sandboxOps.flatMap((op) => [done(`op.${op}`), fail(`op.${op}`)]),
];

const stateNames = (machine: AnyStateMachine) => Object.keys(machine.root.states).sort();
const byValue = (snapshot: { value: unknown }) => JSON.stringify(snapshot.value);

/** What the reference (and our failed/deleted additions) allows, command by stable state. */
const SANDBOX_ALLOWED: Record<string, string[]> = {
  ready: ['START', 'STOP', 'DELETE', 'ONLINE_CPU_MEM', 'CREATE_CONTAINER'],
  running: ['STOP', 'PAUSE', 'ONLINE_CPU_MEM', 'CREATE_CONTAINER'],
  paused: ['RESUME', 'STOP', 'DELETE'],
  stopped: ['START', 'DELETE'],
  failed: ['DELETE'],
};

const CONTAINER_ALLOWED: Record<string, string[]> = {
  ready: ['START', 'STOP', 'DELETE', 'PAUSE', 'KILL', 'EXEC', 'WAIT', 'LOGS'],
  running: ['STOP', 'PAUSE', 'KILL', 'EXEC', 'PS', 'WAIT', 'STATS', 'LOGS', 'RESIZE'],
  paused: ['RESUME', 'STOP', 'KILL', 'STATS', 'WAIT', 'LOGS', 'RESIZE'],
  stopped: ['START', 'STOP', 'DELETE', 'WAIT', 'LOGS'],
};

describe('sandbox statechart', () => {
  const paths = getShortestPaths(sandboxMachine, {
    input: { spec, createdAt: 't' },
    events: sandboxEvents,
    serializeState: byValue,
  });
  const reached = new Map(paths.map((p) => [String(p.state.value), p.state]));

  it('reaches every state', () => {
    expect([...reached.keys()].sort()).toEqual(stateNames(sandboxMachine));
  });

  it('moves between stable states only as the reference table allows', () => {
    for (const path of paths) {
      const stable = path.steps.map((s) => String(s.state.value)).filter((v) => v in TRANSITION_TABLE);
      const moves = stable.slice(1).map((to, i) => [stable[i]!, to] as const).filter(([from, to]) => from !== to);
      expect(moves.filter(([from, to]) => !validTransition(from as never, to as never)), stable.join(' -> ')).toEqual([]);
    }
  });

  for (const [state, allowed] of Object.entries(SANDBOX_ALLOWED)) {
    it(`in ${state} accepts exactly ${allowed.join(', ')} and refuses the rest unchanged`, () => {
      const snapshot = reached.get(state)!;
      expect(snapshot).toBeDefined();
      for (const type of sandboxCommands) {
        const event = sandboxCommand(type);
        expect(snapshot.can(event), `${state} ${type}`).toBe(allowed.includes(type));
        if (!allowed.includes(type)) {
          const next = getNextSnapshot(sandboxMachine, snapshot, event);
          expect(next.value, `${state} ${type}`).toEqual(snapshot.value);
          expect(next.context).toEqual(snapshot.context);
        }
      }
    });
  }

  it('refuses a second container with the same id', () => {
    const ready = reached.get('ready')!;
    const one = getNextSnapshot(sandboxMachine, ready, { type: 'CREATE_CONTAINER', spec: containerSpec });
    expect(one.context.containerIds).toEqual(['c1']);
    expect(one.can({ type: 'CREATE_CONTAINER', spec: containerSpec })).toBe(false);
  });

  it('numbers its own lifecycle notices in order', () => {
    const actor = createActor(sandboxMachine, { input: { spec, createdAt: 't' } });
    const seen: Array<[number, string]> = [];
    actor.on('lifecycle', (e) => seen.push([e.seq, e.notice.type]));
    actor.start();
    for (const e of [done('op.createSandbox'), { type: 'START' }, done('op.startSandbox'), { type: 'STOP' }, done('op.stopSandbox')]) {
      actor.send(e as SandboxEvent);
    }
    expect(seen).toEqual([[1, 'create'], [2, 'start'], [3, 'stop']]);
    actor.stop();
  });
});

describe('container statechart', () => {
  const opIds = ['createContainer', 'startContainer', 'pauseContainer', 'resumeContainer', 'stopContainer', 'deleteContainer'].map((op) => `op.${op}`);
  const events: ContainerEvent[] = [
    ...containerCommands.map(containerCommand),
    { type: 'PROCESS_EXITED', status: 0, at: 't' },
    { type: 'GUEST_LOST', at: 't' },
    ...opIds.flatMap((op) => [
      op === 'op.startContainer'
        ? ({ type: `xstate.done.actor.${op}`, output: { pid: 7, startedAt: 't' }, actorId: op } as never)
        : op === 'op.stopContainer'
          ? ({ type: `xstate.done.actor.${op}`, output: {}, actorId: op } as never)
          : done(op),
      fail(op),
    ]),
  ];
  // Alone, a container has no parent to notify: its notices are dropped here.
  // Its operations are not run here: the chart alone decides what it accepts.
  const model = containerMachine.provide({
    actions: { notify: () => {}, notifyExit: () => {}, relayProcessNotice: () => {}, spawnProcess: () => {}, killProcesses: () => {}, listProcesses: () => {}, readStats: () => {}, resizeTerminal: () => {} },
  });
  const paths = getShortestPaths(model, {
    input: { sandboxId: 's1', spec: containerSpec },
    events,
    serializeState: byValue,
  });
  const reached = new Map(paths.map((p) => [String(p.state.value), p.state]));

  it('reaches every state', () => {
    expect([...reached.keys()].sort()).toEqual(stateNames(containerMachine));
  });

  for (const [state, allowed] of Object.entries(CONTAINER_ALLOWED)) {
    it(`in ${state} accepts exactly ${allowed.join(', ')} and refuses the rest unchanged`, () => {
      const snapshot = reached.get(state)!;
      for (const type of containerCommands) {
        const event = containerCommand(type);
        expect(snapshot.can(event), `${state} ${type}`).toBe(allowed.includes(type));
        if (!allowed.includes(type)) {
          const next = getNextSnapshot(model, snapshot, event);
          expect(next.value).toEqual(snapshot.value);
          expect(next.context).toEqual(snapshot.context);
        }
      }
    });
  }
});

describe('a container whose process exits before its start returns', () => {
  it('ends stopped, with start then exit notices', () => {
    const notices: string[] = [];
    const parent = setup({
      actors: {
        container: containerMachine.provide({
          actors: {
            createContainer: fromPromise(async () => {}),
            startContainer: fromPromise(async () => {
              // The exit is delivered while the start is still in flight.
              child().send({ type: 'PROCESS_EXITED', status: 3, at: 't1' });
              return { pid: 42, startedAt: 't0' };
            }),
          },
        }),
      },
    }).createMachine({
      invoke: { id: 'c1', src: 'container', input: { sandboxId: 's1', spec: containerSpec } },
      on: { CONTAINER_NOTICE: { actions: ({ event }) => notices.push(`${event.notice.type}:${event.notice.exitStatus ?? ''}`) } },
    });
    const actor = createActor(parent).start();
    const child = () => actor.getSnapshot().children.c1 as ContainerActorRef;
    return waitFor(child(), (s) => s.value === 'ready').then(async () => {
      child().send({ type: 'START' });
      const done = await waitFor(child(), (s) => !s.hasTag('busy'));
      expect(done.value).toBe('stopped');
      expect(done.context).toMatchObject({ exitStatus: 3, exitedAt: 't1', pid: 0, startedAt: 't0' });
      expect(notices).toEqual(['create:', 'start:', 'exit:3']);
      actor.stop();
    });
  });
});

describe('process (exec) statechart', () => {
  /** Runs a process actor whose start the test settles; `before` events arrive while it starts. */
  const run = async (start: 'ok' | 'refused', before: ProcessEvent[], after: ProcessEvent[]) => {
    const notices: string[] = [];
    let settle!: () => void;
    const started = new Promise<void>((r) => (settle = r));
    const parent = setup({
      actors: {
        process: processMachine.provide({
          actors: {
            startProcess: fromPromise(async () => {
              await started;
              if (start === 'refused') throw new Error('no such file');
              return { pid: 5 };
            }),
          },
        }),
      },
    }).createMachine({
      invoke: { id: 'p', src: 'process', input: { sandboxId: 's1', containerId: 'c1', execId: 'e1', process: { args: ['true'], env: [], cwd: '', user: '', terminal: false } } },
      on: { PROCESS_NOTICE: { actions: ({ event }) => notices.push(`${event.notice.type}:${event.notice.type === 'exit' ? event.notice.exitStatus : ''}`) } },
    });
    const actor = createActor(parent).start();
    const child = actor.getSnapshot().children.p as unknown as ActorRef<Snapshot<unknown> & { value: unknown }, ProcessEvent>;
    for (const e of before) child.send(e);
    settle();
    await waitFor(child, (s) => s.value !== 'starting');
    for (const e of after) child.send(e);
    const state = child.getSnapshot().value;
    actor.stop();
    return { notices, state };
  };

  it('announces added, started and exit in order', async () => {
    expect(await run('ok', [], [{ type: 'EXITED', status: 7, at: 't' }])).toEqual({
      notices: ['exec-added:', 'exec-started:', 'exit:7'],
      state: 'exited',
    });
  });

  it('keeps an exit that arrives before the start is confirmed', async () => {
    expect(await run('ok', [{ type: 'EXITED', status: 3, at: 't' }], [])).toEqual({
      notices: ['exec-added:', 'exec-started:', 'exit:3'],
      state: 'exited',
    });
  });

  it('announces nothing when the agent could not start it', async () => {
    expect(await run('refused', [], [])).toEqual({ notices: [], state: 'failed' });
  });
});

describe('agent connection statechart', () => {
  it('reaches every state, and dead is final', () => {
    const paths = getShortestPaths(agentMachine, {
      events: [
        { type: 'CONNECT' }, { type: 'DISCONNECT' }, { type: 'CONNECTION_LOST', message: 'x' }, { type: 'MARK_DEAD', reason: 'x' },
        done('connect'), fail('connect'), done('disconnect'),
      ],
      serializeState: byValue,
    });
    expect(paths.map((p) => String(p.state.value)).sort()).toEqual(stateNames(agentMachine));
    const dead = paths.find((p) => p.state.value === 'dead')!.state;
    expect(dead.status).toBe('done');
    expect(dead.can({ type: 'CONNECT' })).toBe(false);
  });
});

describe('exported statecharts', () => {
  const allNodes = (node: { key: string; description?: string; states: Record<string, unknown> }): Array<{ key: string; description?: string }> => [
    node,
    ...Object.values(node.states).flatMap((n) => allNodes(n as typeof node)),
  ];

  it('name every action, guard and actor, and describe every state (nothing exports as an anonymous function)', () => {
    for (const machine of [sandboxMachine, containerMachine, processMachine, agentMachine, monitorMachine] as AnyStateMachine[]) {
      const json = JSON.stringify(machine.toJSON());
      expect(json).not.toContain('"type":"xstate.function"');
      expect(json).not.toMatch(/"type":"inline:/);
      for (const node of allNodes(machine.root as never)) expect(node.description, `${machine.id}: ${node.key}`).toBeTruthy();
    }
  });
});
