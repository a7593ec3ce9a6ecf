// The VM scenarios with the kata agent, and what only kata carries: per-container memory
// limits, so OOM kills inside the guest (which the host learns from the agent's stats).
import { expect, it } from 'vitest';
import { BOOT_MS } from './helpers.js';
import { vmSuite } from './suite.js';

const LIMIT = 32 * 1024 ** 2;
const HOG = ['sh', '-c', 'a=x; while :; do a=$a$a; done'];

vmSuite('kata', ({ rt, ok, sid }) => {
  it('an OOM kill inside the VM (an exec, then a container): oom before the exit, OOMKilled with 32 MiB; a plain SIGKILL after it is none', { timeout: 2 * BOOT_MS }, async () => {
    const events = async (cid: string) => (await rt.eventsOf(sid)).filter((e) => e.containerId === cid).map((e) => [e.execId ? `${e.type}:${e.execId}` : e.type, e.reason ?? '', e.message ?? '']);
    await ok('ContainerCreate', { sid }, { container: { id: 'mem', args: ['sleep', '300'], resources: { memoryLimitBytes: LIMIT } } });
    await ok('ContainerStart', { sid, cid: 'mem' });
    await ok('ContainerExec', { sid, cid: 'mem' }, { execId: 'hog', args: HOG });
    const exec = await ok('ContainerWait', { sid, cid: 'mem' }, { execId: 'hog', timeoutMs: BOOT_MS });
    expect(exec).toMatchObject({ exitStatus: 137, reason: 'OOMKilled' });
    expect(exec.message).toContain(`${LIMIT} bytes (32 MiB)`);
    // SIGKILL to the init after the OOM kill in its cgroup: no OOM kill of its own.
    await ok('ContainerKill', { sid, cid: 'mem' }, { signal: 9 });
    const init = await ok('ContainerWait', { sid, cid: 'mem' }, { timeoutMs: BOOT_MS });
    expect(init.exitStatus).toBe(137);
    expect(init.reason).toBeUndefined();
    expect(await events('mem')).toEqual([
      ['create', '', ''],
      ['start', '', ''],
      ['exec-added:hog', '', ''],
      ['exec-started:hog', '', ''],
      ['oom:hog', '', expect.stringContaining('32 MiB')],
      ['exit:hog', 'OOMKilled', expect.stringContaining('32 MiB')],
      ['exit', '', ''],
    ]);

    await ok('ContainerCreate', { sid }, { container: { id: 'hog', args: HOG, resources: { memoryLimitBytes: LIMIT } } });
    await ok('ContainerStart', { sid, cid: 'hog' });
    const hog = await ok('ContainerWait', { sid, cid: 'hog' }, { timeoutMs: BOOT_MS });
    expect(hog).toMatchObject({ exitStatus: 137, reason: 'OOMKilled' });
    expect((await ok('ContainerStatus', { sid, cid: 'hog' })).container).toMatchObject({ exitStatus: 137, exitReason: 'OOMKilled' });
    expect((await events('hog')).slice(2)).toEqual([
      ['oom', '', expect.stringContaining('32 MiB')],
      ['exit', 'OOMKilled', expect.stringContaining('32 MiB')],
    ]);
    await ok('ContainerDelete', { sid, cid: 'mem' }, { force: true });
    await ok('ContainerDelete', { sid, cid: 'hog' }, { force: true });
  });
});
