// What the live page believes about a sandbox's actors, from events alone and from
// actor snapshots (pure; the page itself is tested in test/ui/).
import { describe, expect, it } from 'vitest';
import { SandboxView, statePath } from '../../ui/page/sandbox-view.js';
import type { Event, Inspection } from '../../bus/messages.gen.js';

const ev = (e: Partial<Event>): Event => ({ sandboxId: 's1', seq: 1, time: 't', ...e });
const snap = (path: string, state: unknown, status = 'active'): Inspection => ({
  sandboxId: 's1', actorId: path.split('/').at(-1), path, state: JSON.stringify(state), status, event: 'x', time: 't',
});

describe('SandboxView', () => {
  it('reads nested state values as dotted paths', () => {
    expect(statePath('running')).toBe('running');
    expect(statePath({ watching: 'waiting' })).toBe('watching.waiting');
    expect(statePath(null)).toBe('');
  });

  it('follows states from events, and shows the monitor only while the sandbox runs', () => {
    const v = new SandboxView('s1');
    expect(v.applyEvent(ev({ type: 'create', state: 'ready' }))).toBe(false);
    expect(v.monitorState()).toBeUndefined();
    v.applyEvent(ev({ type: 'start', state: 'running' }));
    // Without snapshots only the monitor's outer state is known.
    expect(v.monitorState()).toEqual({ value: 'watching', done: false });
    expect(v.applyEvent(ev({ type: 'create', containerId: 'c1', state: 'ready' }))).toBe(true);
    expect(v.applyEvent(ev({ type: 'exec-added', containerId: 'c1', execId: 'x1', state: 'starting' }))).toBe(true);
    expect(v.applyEvent(ev({ type: 'exec-started', containerId: 'c1', execId: 'x1', state: 'running' }))).toBe(false);
    v.applyEvent(ev({ type: 'fail', state: 'failed', reason: 'guest-exited', message: 'killed', time: 'T' }));
    expect(v.failure).toEqual({ reason: 'guest-exited', message: 'killed', at: 'T' });
    expect(v.monitorState()).toBeUndefined();
    expect(v.containers.get('c1')!.execs.get('x1')).toEqual({ value: 'running', done: false });
    expect(v.history.map((e) => e.type)).toEqual(['create', 'start', 'create', 'exec-added', 'exec-started', 'fail']);
  });

  it('tells a container from an exec of the same name by its path, and skips operations', () => {
    const v = new SandboxView('s1');
    v.applyInspection(snap('s1', 'running'));
    v.applyInspection(snap('s1/x', 'running'));
    v.applyInspection(snap('s1/c1/x', 'starting'));
    v.applyInspection(snap('s1/op.startSandbox', null, 'done'));
    v.applyInspection(snap('s1/c1/startContainer', null));
    v.applyInspection(snap('s1/op.monitor', { watching: 'checking' }));
    expect([...v.containers.keys()]).toEqual(['x', 'c1']);
    expect(v.containers.get('x')!.state.value).toBe('running');
    expect([...v.containers.get('c1')!.execs.keys()]).toEqual(['x']);
    expect(v.monitorState()).toEqual({ value: 'watching.checking', done: false });
    expect(v.inspected).toBe(true);
  });
});
