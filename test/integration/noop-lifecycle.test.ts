import { describe, expect, it } from 'vitest';
import { useRuntime } from '../helpers/runtime.js';

const rt = useRuntime();

describe('noop sandbox lifecycle over the bus', () => {
  it('creates, starts, stops and deletes a sandbox with two containers', async () => {
    const created = await rt.client.request('SandboxCreate', {}, { sandbox: { id: 's1', agent: 'noop' } });
    expect(created).toMatchObject({ ok: true, sandbox: { id: 's1', state: 'ready', ociState: 'created' } });

    for (const id of ['c1', 'c2']) {
      const c = await rt.client.request('ContainerCreate', { sid: 's1' }, { container: { id, args: ['sleep', '1'] } });
      expect(c).toMatchObject({ ok: true, container: { id, state: 'ready' } });
    }
    const started = await rt.client.request('SandboxStart', { sid: 's1' });
    expect(started.ok).toBe(true);
    expect((started.sandbox as any).state).toBe('running');
    expect((started.sandbox as any).containers.map((c: any) => c.state)).toEqual(['running', 'running']);

    const stopped = await rt.client.request('SandboxStop', { sid: 's1' });
    expect((stopped.sandbox as any).state).toBe('stopped');
    const deleted = await rt.client.request('SandboxDelete', { sid: 's1' });
    expect(deleted).toEqual({ ok: true, id: 's1' });
    const gone = await rt.client.request('SandboxStatus', { sid: 's1' });
    expect(gone).toMatchObject({ ok: false, error: { code: 'NotFound' } });

    const events = await rt.eventsOf('s1');
    expect(events.map((e) => [e.seq, e.containerId ?? '', e.type])).toEqual([
      [1, '', 'create'],
      [2, 'c1', 'create'],
      [3, 'c2', 'create'],
      [4, 'c1', 'start'],
      [5, 'c2', 'start'],
      [6, '', 'start'],
      [7, 'c1', 'exit'],
      [8, 'c2', 'exit'],
      [9, '', 'stop'],
      [10, 'c1', 'delete'],
      [11, 'c2', 'delete'],
      [12, '', 'delete'],
    ]);
  });

  it('resizes the terminal of a noop process that has one (and refuses one without)', async () => {
    await rt.client.call('SandboxCreate', {}, {
      sandbox: { id: 's2', containers: [{ id: 't', args: ['sh'], terminal: true, consoleSize: { rows: 24, cols: 80 } }, { id: 'p', args: ['sh'] }] },
      start: true,
    });
    expect(await rt.client.request('ContainerResize', { sid: 's2', cid: 't' }, { rows: 50, cols: 160 })).toEqual({ ok: true });
    const refused = await rt.client.request('ContainerResize', { sid: 's2', cid: 'p' }, { rows: 50, cols: 160 });
    expect(refused).toMatchObject({ ok: false, error: { code: 'FailedPrecondition', message: expect.stringMatching(/container p was started without a terminal/) } });
    // The spec keeps the size the terminal started with.
    expect((await rt.client.call('ContainerStatus', { sid: 's2', cid: 't' })).container?.spec?.consoleSize).toEqual({ rows: 24, cols: 80 });
    await rt.client.call('SandboxDelete', { sid: 's2' }, { force: true });
  });
});
