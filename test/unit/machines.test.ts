// Model-based tests of the lifecycle statecharts: every state is reachable through the
// graph of commands and operation outcomes, and in every state each command is either
// allowed by the reference's rules or refused without any change of state.
import { describe, expect, it } from 'vitest';
import { getShortestPaths } from 'xstate/graph';
import { getNextSnapshot, createActor, fromPromise, setup, waitFor, type AnyStateMachine } from 'xstate';
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
const sandboxEvents: SandboxEvent[] = [
  ...sandboxCommands.filter((c) => c !== 'CREATE_CONTAINER').map((type) => ({ type }) as SandboxEvent),
  { type: 'CREATE_CONTAINER', spec: containerSpec },
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
  ready: ['START', 'STOP', 'DELETE', 'PAUSE', 'KILL', 'EXEC', 'WAIT'],
  running: ['STOP', 'PAUSE', 'KILL', 'EXEC', 'PS', 'WAIT', 'STATS'],
  paused: ['RESUME', 'STOP', 'KILL', 'STATS', 'WAIT'],
  stopped: ['START', 'STOP', 'DELETE', 'WAIT'],
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
      for (let i = 1; i < stable.length; i++) {
        if (stable[i] !== stable[i - 1]) expect(validTransition(stable[i - 1] as never, stable[i] as never), stable.join(' -> ')).toBe(true);
      }
    }
  });

  for (const [state, allowed] of Object.entries(SANDBOX_ALLOWED)) {
    it(`in ${state} accepts exactly ${allowed.join(', ')} and refuses the rest unchanged`, () => {
      const snapshot = reached.get(state)!;
      expect(snapshot).toBeDefined();
      for (const type of sandboxCommands) {
        const event = (type === 'CREATE_CONTAINER' ? { type, spec: containerSpec } : { type }) as SandboxEvent;
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
  const opIds = ['createContainer', 'startContainer', 'pauseContainer', 'resumeContainer', 'stopContainer', 'deleteContainer'];
  const events: ContainerEvent[] = [
    ...containerCommands.map((type) => ({ type }) as ContainerEvent),
    { type: 'PROCESS_EXITED', status: 0, at: 't' },
    { type: 'GUEST_LOST', at: 't' },
    ...opIds.flatMap((op) => [
      op === 'startContainer'
        ? ({ type: `xstate.done.actor.${op}`, output: { pid: 7, startedAt: 't' }, actorId: op } as never)
        : op === 'stopContainer'
          ? ({ type: `xstate.done.actor.${op}`, output: {}, actorId: op } as never)
          : done(op),
      fail(op),
    ]),
  ];
  // Alone, a container has no parent to notify: its notices are dropped here.
  const model = containerMachine.provide({ actions: { notify: () => {}, notifyExit: () => {}, relayProcessNotice: () => {} } });
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
        const event = { type } as ContainerEvent;
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
  const run = (events: ProcessEvent[]) => {
    const notices: string[] = [];
    const parent = setup({ actors: { process: processMachine } }).createMachine({
      invoke: { id: 'p', src: 'process', input: { execId: 'e1' } },
      on: { PROCESS_NOTICE: { actions: ({ event }) => notices.push(`${event.notice.type}:${event.notice.exitStatus ?? ''}`) } },
    });
    const actor = createActor(parent).start();
    const child = actor.getSnapshot().children.p as { send: (e: ProcessEvent) => void; getSnapshot: () => { value: unknown } };
    for (const e of events) child.send(e);
    const state = child.getSnapshot().value;
    actor.stop();
    return { notices, state };
  };

  it('announces added, started and exit in order', () => {
    expect(run([{ type: 'STARTED', pid: 5 }, { type: 'EXITED', status: 7, at: 't' }])).toEqual({
      notices: ['exec-added:', 'exec-started:', 'exit:7'],
      state: 'exited',
    });
  });

  it('keeps an exit that arrives before the start is confirmed', () => {
    expect(run([{ type: 'EXITED', status: 3, at: 't' }, { type: 'STARTED', pid: 5 }])).toEqual({
      notices: ['exec-added:', 'exec-started:', 'exit:3'],
      state: 'exited',
    });
  });

  it('ends without an exit when the agent could not start it', () => {
    expect(run([{ type: 'START_FAILED' }])).toEqual({ notices: ['exec-added:'], state: 'failed' });
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
  it('name every action, guard and actor (nothing exports as an anonymous function)', () => {
    for (const machine of [sandboxMachine, containerMachine, processMachine, agentMachine] as AnyStateMachine[]) {
      const json = JSON.stringify(machine.toJSON());
      expect(json).not.toContain('"type":"xstate.function"');
      expect(json).not.toMatch(/"type":"inline:/);
      for (const node of Object.values(machine.root.states)) expect((node as { description?: string }).description, node.key).toBeTruthy();
    }
  });
});
