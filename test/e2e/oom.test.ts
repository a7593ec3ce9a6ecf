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

    it('virtactors run -m 32m exits 137 and says OOMKilled', async () => {
      const cli = await runCli(rt.server, 'run', '--agent', 'kata', '--rm', '--name', `oom-cli-v${v}`, '-m', '32m', '--', 'sh', '-c', 'a=x; while :; do a=$a$a; done');
      expect(cli.code).toBe(137);
      expect(cli.stderr).toMatch(/^virtactors: exited 137: OOMKilled \(killed by the kernel's OOM killer under the memory limit of 33554432 bytes \(32 MiB\)\)\n$/);
    });
  });
}
