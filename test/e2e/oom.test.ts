// A container killed by its memory limit: an `oom` event before its exit, and the exit,
// the status and wait all say OOMKilled with the limit (the kata agent applies the
// container's OCI memory limit to its own cgroup; the host reads that cgroup's counter).
import { describe, expect, it } from 'vitest';
import { readHostCgroups } from '../../actors/backends/cgroups/index.js';
import { useRuntime } from '../helpers/runtime.js';
import { runCli } from '../helpers/cli.js';

const rt = useRuntime({ host: 'oom-host' });
const host = await readHostCgroups();
const version = host.v1.length > 0 ? 1 : host.v2?.writable ? 2 : 0;
const LIMIT = 32 * 1024 ** 2;

// The runtime uses v1 wherever v1 controllers are mounted (hybrid hosts) and v2 only on
// unified-only hosts: one machine exercises one of the two.
for (const v of [1, 2] as const) {
  const why = version === 0 ? 'this machine has no writable cgroups' : `this machine's runtime uses cgroup v${version}, not v${v}`;
  describe.skipIf(version !== v)(`OOM kill under cgroup v${v} (${version === v ? 'this machine' : `skipped: ${why}`})`, { timeout: 120_000 }, () => {
    it('reports an oom event before the exit, and OOMKilled with the 32 MiB limit', async () => {
      const sid = `oom-v${v}`;
      await rt.ok('SandboxCreate', {}, { sandbox: { id: sid, agent: 'kata' }, start: true });
      // Doubles a shell string until the kernel kills the shell.
      await rt.ok('ContainerCreate', { sid }, { container: { id: 'hog', args: ['sh', '-c', 'a=x; while :; do a=$a$a; done'], resources: { memoryLimitBytes: LIMIT } } });
      await rt.ok('ContainerStart', { sid, cid: 'hog' });
      const waited = await rt.ok('ContainerWait', { sid, cid: 'hog' }, { timeoutMs: 60_000 });
      expect(waited).toMatchObject({ exitStatus: 137, reason: 'OOMKilled' });
      expect(waited.message).toContain(`${LIMIT} bytes (32 MiB)`);
      const status = await rt.ok('ContainerStatus', { sid, cid: 'hog' });
      expect(status.container).toMatchObject({ exitStatus: 137, exitReason: 'OOMKilled' });

      const events = (await rt.eventsOf(sid)).filter((e) => e.containerId === 'hog').map((e) => [e.type, e.reason ?? '', e.message ?? '']);
      const oom = events.findIndex(([t]) => t === 'oom');
      expect(oom).toBeGreaterThan(0);
      expect(events[oom + 1]).toEqual(['exit', 'OOMKilled', expect.stringContaining('32 MiB')]);
      expect(events[oom]![2]).toContain('32 MiB');

      // A plain SIGKILL afterwards is no OOM kill: nothing moved.
      await rt.ok('ContainerCreate', { sid }, { container: { id: 'sleeper', args: ['sleep', '300'], resources: { memoryLimitBytes: LIMIT } } });
      await rt.ok('ContainerStart', { sid, cid: 'sleeper' });
      await rt.ok('ContainerKill', { sid, cid: 'sleeper' }, { signal: 9 });
      const killed = await rt.ok('ContainerWait', { sid, cid: 'sleeper' }, { timeoutMs: 30_000 });
      expect(killed.exitStatus).toBe(137);
      expect(killed.reason).toBeUndefined();
      await rt.ok('SandboxDelete', { sid }, { force: true });
    });

    // The exec's own events, as [type, reason, message].
    const execEvents = async (sid: string, eid: string) =>
      (await rt.eventsOf(sid)).filter((e) => e.execId === eid).map((e) => [e.type, e.reason ?? '', e.message ?? '']);
    const HOG = ['sh', '-c', 'a=x; while :; do a=$a$a; done'];

    it('an exec the OOM killer kills (kata): oom for the exec before its exit, and OOMKilled with the 32 MiB limit', async () => {
      const sid = `oom-exec-kata-v${v}`;
      await rt.ok('SandboxCreate', {}, { sandbox: { id: sid, agent: 'kata' }, start: true });
      await rt.ok('ContainerCreate', { sid }, { container: { id: 'box', args: ['sleep', '300'], resources: { memoryLimitBytes: LIMIT } } });
      await rt.ok('ContainerStart', { sid, cid: 'box' });
      await rt.ok('ContainerExec', { sid, cid: 'box' }, { execId: 'hog', args: HOG });
      const waited = await rt.ok('ContainerWait', { sid, cid: 'box' }, { execId: 'hog', timeoutMs: 60_000 });
      expect(waited).toMatchObject({ exitStatus: 137, reason: 'OOMKilled' });
      expect(waited.message).toContain(`${LIMIT} bytes (32 MiB)`);
      // Asked again once it is remembered, the exit says the same.
      expect(await rt.ok('ContainerWait', { sid, cid: 'box' }, { execId: 'hog' })).toMatchObject({ exitStatus: 137, reason: 'OOMKilled' });
      expect(await execEvents(sid, 'hog')).toEqual([
        ['exec-added', '', ''],
        ['exec-started', '', ''],
        ['oom', '', expect.stringContaining('32 MiB')],
        ['exit', 'OOMKilled', expect.stringContaining('32 MiB')],
      ]);
      // The container's init was not the victim: it still runs, and no oom is its.
      expect((await rt.ok('ContainerStatus', { sid, cid: 'box' })).container?.state).toBe('running');
      expect((await rt.eventsOf(sid)).filter((e) => e.type === 'oom' && !e.execId)).toEqual([]);
      await rt.ok('SandboxDelete', { sid }, { force: true });
    });

    it('an exec the OOM killer kills (hyperstart, under the sandbox limit): oom before its exit, and OOMKilled with that limit', async () => {
      // The hyperstart protocol has no per-container limits, so the limit is the sandbox's
      // cgroup's; that cgroup also holds the guest agent (a Node process of some 40 MiB),
      // which could not start under 32 MiB: the sandbox gets 128 MiB.
      const sid = `oom-exec-hyper-v${v}`;
      const sandboxLimit = 128 * 1024 ** 2;
      await rt.ok('SandboxCreate', {}, { sandbox: { id: sid, agent: 'hyperstart', annotations: { 'io.virtactors.memory-limit': '128M' } }, start: true });
      await rt.ok('ContainerCreate', { sid }, { container: { id: 'box', args: ['sleep', '300'] } });
      await rt.ok('ContainerStart', { sid, cid: 'box' });
      await rt.ok('ContainerExec', { sid, cid: 'box' }, { execId: 'hog', args: HOG });
      const waited = await rt.ok('ContainerWait', { sid, cid: 'box' }, { execId: 'hog', timeoutMs: 60_000 });
      expect(waited).toMatchObject({ exitStatus: 137, reason: 'OOMKilled' });
      expect(waited.message).toContain(`${sandboxLimit} bytes (128 MiB)`);
      expect(await execEvents(sid, 'hog')).toEqual([
        ['exec-added', '', ''],
        ['exec-started', '', ''],
        ['oom', '', expect.stringContaining('128 MiB')],
        ['exit', 'OOMKilled', expect.stringContaining('128 MiB')],
      ]);
      expect((await rt.ok('SandboxStatus', { sid })).sandbox?.state).toBe('running');
      await rt.ok('SandboxDelete', { sid }, { force: true });
    });

    it('a plain SIGKILL of an exec and its container, after an OOM kill in the same cgroup, is no OOM kill', async () => {
      const sid = `oom-sigkill-v${v}`;
      await rt.ok('SandboxCreate', {}, { sandbox: { id: sid, agent: 'kata' }, start: true });
      await rt.ok('ContainerCreate', { sid }, { container: { id: 'box', args: ['sleep', '300'], resources: { memoryLimitBytes: LIMIT } } });
      await rt.ok('ContainerStart', { sid, cid: 'box' });
      // The counter of this cgroup has moved once before the kills below.
      await rt.ok('ContainerExec', { sid, cid: 'box' }, { execId: 'hog', args: HOG });
      expect(await rt.ok('ContainerWait', { sid, cid: 'box' }, { execId: 'hog', timeoutMs: 60_000 })).toMatchObject({ reason: 'OOMKilled' });
      await rt.ok('ContainerExec', { sid, cid: 'box' }, { execId: 'sleeper', args: ['sleep', '300'] });
      // SIGKILL to every process of the container: the exec and the init.
      await rt.ok('ContainerKill', { sid, cid: 'box' }, { signal: 9, all: true });
      const exec = await rt.ok('ContainerWait', { sid, cid: 'box' }, { execId: 'sleeper', timeoutMs: 30_000 });
      expect(exec.exitStatus).toBe(137);
      expect(exec.reason).toBeUndefined();
      const init = await rt.ok('ContainerWait', { sid, cid: 'box' }, { timeoutMs: 30_000 });
      expect(init.exitStatus).toBe(137);
      expect(init.reason).toBeUndefined();
      expect((await rt.ok('ContainerStatus', { sid, cid: 'box' })).container?.exitReason ?? '').toBe('');
      const events = await rt.eventsOf(sid);
      expect(events.filter((e) => e.type === 'oom').map((e) => e.execId ?? '')).toEqual(['hog']);
      expect(events.filter((e) => e.type === 'exit' && e.reason).map((e) => e.execId ?? '')).toEqual(['hog']);
      await rt.ok('SandboxDelete', { sid }, { force: true });
    });

    it('virtactors run -m 32m exits 137 and says OOMKilled', async () => {
      const cli = await runCli(rt.server, 'run', '--agent', 'kata', '--rm', '--name', `oom-cli-v${v}`, '-m', '32m', '--', 'sh', '-c', 'a=x; while :; do a=$a$a; done');
      expect(cli.code).toBe(137);
      expect(cli.stderr).toMatch(/^virtactors: exited 137: OOMKilled \(killed by the kernel's OOM killer under the memory limit of 33554432 bytes \(32 MiB\)\)\n$/);
    });
  });
}
