// A noop sandbox's monitor checks its (always healthy) agent every interval while the
// sandbox runs, never raises a false alarm, and rests while the sandbox is paused. The
// checks are counted from the monitor's own snapshots (live inspection): without a
// monitor there are none, and this test fails.
import { describe, expect, it } from 'vitest';
import { decodeTrusted } from '../../bus/codec.js';
import { subjects } from '../../bus/subjects.js';
import type * as Bus from '../../bus/messages.gen.js';
import { useRuntime } from '../helpers/runtime.js';

const rt = useRuntime({ inspect: true });

/** Resolves once `count()` reaches `n`, or after `ms` (the test then fails on the count). */
async function until(count: () => number, n: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (count() < n && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}

describe('monitor of a noop sandbox', () => {
  it('checks every interval, stays quiet over a hundred checks, and rests while paused', async () => {
    let checks = 0;
    const sub = rt.client.nc.subscribe(subjects.inspectSandbox('quiet'), {
      callback: (_e, m) => {
        const i = decodeTrusted<Bus.Inspection>(m.data);
        if (i.actorId === 'op.monitor' && JSON.parse(i.state!)?.watching === 'checking') checks++;
      },
    });
    await rt.client.nc.flush();
    await rt.ok('SandboxCreate', {}, { sandbox: { id: 'quiet', monitor: { intervalMs: 10, deadlineMs: 20 } }, start: true });
    await until(() => checks, 60, 15_000);
    expect(checks).toBeGreaterThanOrEqual(60);

    await rt.ok('SandboxPause', { sid: 'quiet' });
    await rt.client.nc.flush();
    const whenPaused = checks;
    await new Promise((res) => setTimeout(res, 200));
    expect(checks).toBe(whenPaused);

    await rt.ok('SandboxResume', { sid: 'quiet' });
    await until(() => checks, whenPaused + 60, 15_000);
    expect(checks).toBeGreaterThanOrEqual(whenPaused + 60);
    sub.unsubscribe();

    const status = await rt.ok('SandboxStatus', { sid: 'quiet' });
    expect(status.sandbox).toMatchObject({ state: 'running' });
    const types = (await rt.eventsOf('quiet')).map((e) => e.type);
    expect(types).toEqual(['create', 'start', 'pause', 'resume']);
  });
});
