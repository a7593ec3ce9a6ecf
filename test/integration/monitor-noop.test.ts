// A noop sandbox's monitor never raises a false alarm, however many intervals pass.
import { describe, expect, it } from 'vitest';
import { useRuntime } from '../helpers/runtime.js';

const rt = useRuntime();

describe('monitor of a noop sandbox', () => {
  it('stays quiet over a hundred intervals, through pause and resume', async () => {
    const r = await rt.client.request('SandboxCreate', {}, {
      sandbox: { id: 'quiet', monitor: { intervalMs: 10, deadlineMs: 20 } },
      start: true,
    });
    expect(r.ok).toBe(true);
    await new Promise((res) => setTimeout(res, 600));
    expect((await rt.client.request('SandboxPause', { sid: 'quiet' })).ok).toBe(true);
    await new Promise((res) => setTimeout(res, 100));
    expect((await rt.client.request('SandboxResume', { sid: 'quiet' })).ok).toBe(true);
    await new Promise((res) => setTimeout(res, 600));
    const status = await rt.client.request('SandboxStatus', { sid: 'quiet' });
    expect(status).toMatchObject({ ok: true, sandbox: { state: 'running' } });
    const types = (await rt.eventsOf('quiet')).map((e) => e.type);
    expect(types).toEqual(['create', 'start', 'pause', 'resume']);
  });
});
