// The runc scenarios (test/e2e/runc*.test.ts): the end-to-end scenarios once more with
// runc as the guests' OCI runtime (the host setting VC_OCI_RUNTIME=runc, which each file
// sets for its own process), on the namespace backend. A subset, to bound the suite's
// cost: what runc does differently from crun. runc places containers in cgroups itself
// (crun is told not to), so the cgroup, the freezer, stats, the OOM kill and execs (which
// runc joins to the container's cgroup) are each checked; output, exit status and signals
// once; and the confinement probes that depend on the runtime applying the spec
// (capabilities, no_new_privs, seccomp). The rest of the scenarios (rootfs paths, process
// namespaces, leftovers) do not depend on which runtime runs the bundle and stay with crun.
// Terminal processes are refused under runc (checked here): it would give them pipes.
import { kernelAllowsUserNamespaces } from '../../actors/backends/userns.js';
import { accessSync, constants, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readHostCgroups } from '../../actors/backends/cgroups/index.js';
import type * as Bus from '../../bus/messages.gen.js';
import { sandboxProcesses } from '../helpers/processes.js';
import type { RuntimeContext } from '../helpers/runtime.js';

const runc = ['/usr/sbin/runc', '/usr/bin/runc', '/sbin/runc', '/usr/local/sbin/runc'].find((p) => {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
});
const host = await readHostCgroups();
const version = host.v1.some((h) => h.writable) ? 1 : host.v2?.writable ? 2 : 0;
export const why = !runc ? 'runc is not installed (npm run setup installs it)' : version === 0 ? 'this machine has no writable cgroups for sandboxes' : '';

/** CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP. */
const DOCKER_CAP_EFF = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31]
  .reduce((mask, bit) => mask | (1n << BigInt(bit)), 0n)
  .toString(16)
  .padStart(16, '0');

/** /proc/PID/cgroup as [controllers, path] pairs. */
function cgroupsOf(pid: number): [string, string][] {
  return readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .map((l) => /^\d+:([^:]*):(.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => [m[1]!, m[2]!]);
}

/** The hierarchies with controllers the runtime puts sandboxes in (v1), or the unified one (v2). */
const controlled = ([controllers]: [string, string]) => (version === 1 ? controllers !== '' && !controllers.startsWith('name=') : controllers === '');

/** A file of the process's cgroup in one controller's hierarchy, as the host sees it. */
function cgroupFile(pid: number, controller: string, file: string): string {
  if (version === 2) return `${host.v2!.mount}${cgroupsOf(pid).find(([c]) => c === '')![1]}/${file}`;
  const h = host.v1.find((x) => x.controllers.includes(controller))!;
  const path = cgroupsOf(pid).find(([c]) => c.split(',').includes(controller))![1];
  return `${h.mount}${path}/${file}`;
}

function attempt<T>(read: () => T, fallback: T): T {
  try {
    return read();
  } catch {
    return fallback;
  }
}

const statusOf = (text: string) => Object.fromEntries(text.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));

export interface RuncScenarioOptions {
  /** Only the runtime and cgroup scenarios: for a host setting that changes where runc may place containers and nothing else. */
  placementOnly?: boolean;
  /** Whether the host runs sandboxes in a user namespace (default: where the kernel allows it). */
  userNamespace?: boolean;
  /** Sandbox ids start with it: files running side by side must not share ids (processes are found by sandbox id). */
  idPrefix?: string;
}

/** The scenarios for one agent. */
export function runcScenarios(rt: RuntimeContext, agent: 'kata' | 'hyperstart', options: RuncScenarioOptions = {}): void {
  const { placementOnly = false, userNamespace = kernelAllowsUserNamespaces(), idPrefix = 'runc' } = options;
  describe.skipIf(why !== '')(`${agent} agent with runc as the OCI runtime${why ? ` (skipped: ${why})` : ''}`, { timeout: 60_000 }, () => {
    const sid = `${idPrefix}-${agent.slice(0, 4)}`;
    let n = 0;
    beforeAll(async () => {
      await rt.ok('SandboxCreate', {}, { sandbox: { id: sid, agent, backend: 'namespace' }, start: true });
    });
    afterAll(async () => {
      await rt.client.request('SandboxDelete', { sid }, { force: true });
    });

    /** A started container running `sleep <unique seconds>`, and its host pid. */
    async function sleeper(extra: Partial<Bus.ContainerSpec> = {}): Promise<{ cid: string; pid: number }> {
      const cid = `s${++n}`;
      const seconds = String(3000 + n);
      await rt.ok('ContainerCreate', { sid }, { container: { id: cid, args: ['sleep', seconds], ...extra } });
      await rt.ok('ContainerStart', { sid, cid });
      // Other processes of the sandbox may end while they are looked at.
      const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'latin1').toString();
      const pids = (await sandboxProcesses(sid)).filter((pid) => new RegExp(`^(/bin/)?sleep\0${seconds}\0$`).test(attempt(() => cmdline(pid), '')));
      expect(pids).toHaveLength(1);
      return { cid, pid: pids[0]! };
    }

    const wait = (cid: string, execId?: string) => rt.ok('ContainerWait', { sid, cid }, { ...(execId ? { execId } : {}), timeoutMs: 20_000 });

    it('runs the container under runc, with its output and exit status', async () => {
      expect((await rt.ok('SandboxStatus', { sid })).sandbox?.userNamespace ?? false).toBe(userNamespace);
      const { cid, pid } = await sleeper();
      // The container's init (tini) is the child of the runtime that runs it in the foreground.
      const init = Number(/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
      const runtime = Number(/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${init}/status`, 'utf8'))![1]);
      expect(realpathSync(readlinkSync(`/proc/${runtime}/exe`))).toBe(realpathSync(runc!));
      await rt.ok('ContainerDelete', { sid, cid }, { force: true });

      await rt.ok('ContainerCreate', { sid }, { container: { id: 'out', args: ['sh', '-c', 'echo hello; echo oops >&2; exit 3'] } });
      await rt.ok('ContainerStart', { sid, cid: 'out' });
      expect(await wait('out')).toMatchObject({ exitStatus: 3 });
      const logs = await rt.ok('ContainerLogs', { sid, cid: 'out' });
      expect([logs.stdout, logs.stderr]).toEqual(['hello\n', 'oops\n']);
      await rt.ok('ContainerDelete', { sid, cid: 'out' });
    });

    it("puts the container and its execs in the container's own cgroup inside the sandbox's, in every controller", async () => {
      const { cid, pid } = await sleeper();
      const guest = rt.host.host.registry.get(sid).backend.pid!;
      const sandboxPaths = new Map(cgroupsOf(guest).filter(controlled));
      const container = cgroupsOf(pid).filter(controlled);
      expect(container.length).toBeGreaterThan(0);
      expect(container.map(([c]) => c).sort()).toEqual([...sandboxPaths.keys()].sort());
      for (const [controllers, path] of container) {
        // <sandbox's cgroup>/<the guest's group>/<container id>: a child of the sandbox's, named after the container.
        const sandbox = sandboxPaths.get(controllers)!;
        expect(sandbox, controllers).toMatch(new RegExp(`/virtactors/[A-Za-z0-9_-]+\\.${sid}\\.[0-9a-f]+$`));
        expect(path, controllers).toMatch(new RegExp(`^${sandbox.replace(/[.]/g, '\\.')}/[^/]+/${cid}$`));
      }
      // Where the sandbox has no cgroup (name=systemd, a hybrid host's cgroup2), the container stays where the guest is.
      const guestAll = new Map(cgroupsOf(guest));
      for (const [controllers, path] of cgroupsOf(pid).filter((l) => !controlled(l))) expect(path, controllers).toBe(guestAll.get(controllers));

      // An exec joins the same cgroups (runc places it).
      await rt.ok('ContainerExec', { sid, cid }, { execId: 'cg', args: ['cat', '/proc/self/cgroup'] });
      expect(await wait(cid, 'cg')).toMatchObject({ exitStatus: 0 });
      const execGroups = (await rt.ok('ContainerLogs', { sid, cid }, { execId: 'cg' })).stdout!;
      for (const [controllers, path] of container) expect(execGroups).toContain(`:${controllers}:${path}\n`);
      await rt.ok('ContainerDelete', { sid, cid }, { force: true });
    });

    if (placementOnly) return;

    it('execs, with output and exit status', async () => {
      const { cid } = await sleeper();
      await rt.ok('ContainerExec', { sid, cid }, { execId: 'e1', args: ['sh', '-c', 'echo from-exec; exit 7'] });
      expect(await wait(cid, 'e1')).toMatchObject({ exitStatus: 7 });
      expect((await rt.ok('ContainerLogs', { sid, cid }, { execId: 'e1' })).stdout).toBe('from-exec\n');
      await rt.ok('ContainerDelete', { sid, cid }, { force: true });
    });

    it('refuses a terminal process, which runc would give pipes instead of the terminal', async () => {
      const { cid } = await sleeper();
      const reply = await rt.client.request('ContainerExec', { sid, cid }, { execId: 'tty', args: ['sh', '-c', '[ -t 1 ]'], terminal: true });
      expect(reply.error).toMatchObject({ code: 'FailedPrecondition', message: expect.stringMatching(/a terminal process needs crun/) });
      await rt.ok('ContainerDelete', { sid, cid }, { force: true });
    });

    it('kills with a signal: 143 after SIGTERM', async () => {
      const { cid } = await sleeper();
      await rt.ok('ContainerKill', { sid, cid }, { signal: 15 });
      expect(await wait(cid)).toMatchObject({ exitStatus: 143 });
      await rt.ok('ContainerDelete', { sid, cid });
    });

    it("pauses and resumes through the container's freezer", async () => {
      const { cid, pid } = await sleeper();
      const freezer = version === 1 ? cgroupFile(pid, 'freezer', 'freezer.state') : cgroupFile(pid, '', 'cgroup.freeze');
      expect((await rt.ok('ContainerPause', { sid, cid })).container?.state).toBe('paused');
      expect(readFileSync(freezer, 'utf8').trim()).toBe(version === 1 ? 'FROZEN' : '1');
      expect((await rt.ok('ContainerResume', { sid, cid })).container?.state).toBe('running');
      expect(readFileSync(freezer, 'utf8').trim()).toBe(version === 1 ? 'THAWED' : '0');
      await rt.ok('ContainerKill', { sid, cid }, { signal: 9 });
      expect(await wait(cid)).toMatchObject({ exitStatus: 137 });
      await rt.ok('ContainerDelete', { sid, cid });
    });

    it('lists the container processes with ps', async () => {
      const { cid } = await sleeper();
      await rt.ok('ContainerExec', { sid, cid }, { execId: 'side', args: ['sleep', '62'] });
      expect(JSON.parse((await rt.ok('ContainerPs', { sid, cid }, { format: 'json' })).output!)).toHaveLength(2);
      const table = (await rt.ok('ContainerPs', { sid, cid }, { format: 'table' })).output!.trim().split('\n');
      expect(table).toHaveLength(3);
      expect(table.slice(1).some((l) => l.includes('sleep 62'))).toBe(true);
      await rt.ok('ContainerDelete', { sid, cid }, { force: true });
    });

    it("runs with Docker's default capabilities, no_new_privs and a seccomp filter, its execs too", async () => {
      const { cid } = await sleeper();
      await rt.ok('ContainerExec', { sid, cid }, { execId: 'init', args: ['sh', '-c', 'cat /proc/$(cat /proc/1/task/1/children | cut -d" " -f1)/status'] });
      await rt.ok('ContainerExec', { sid, cid }, { execId: 'self', args: ['cat', '/proc/self/status'] });
      for (const execId of ['init', 'self']) {
        expect(await wait(cid, execId)).toMatchObject({ exitStatus: 0 });
        const status = statusOf((await rt.ok('ContainerLogs', { sid, cid }, { execId })).stdout ?? '');
        expect([execId, status.CapEff, status.NoNewPrivs, status.Seccomp]).toEqual([execId, DOCKER_CAP_EFF, '1', '2']);
      }
      await rt.ok('ContainerDelete', { sid, cid }, { force: true });
    });

    if (agent === 'kata') {
      it("reports stats from the container's cgroup", async () => {
        const { cid } = await sleeper({ resources: { pidsLimit: 50 } });
        await rt.ok('ContainerExec', { sid, cid }, { execId: 'side', args: ['sleep', '63'] });
        const { stats } = await rt.ok('ContainerStats', { sid, cid });
        expect(stats).toMatchObject({ pidsCurrent: 3, pidsLimit: 50 });
        expect(Number(stats!.memoryUsageBytes)).toBeGreaterThan(0);
        await rt.ok('ContainerDelete', { sid, cid }, { force: true });
      });

      it('says OOMKilled when the memory limit kills the container', async () => {
        const limit = 32 * 1024 ** 2;
        await rt.ok('ContainerCreate', { sid }, { container: { id: 'hog', args: ['sh', '-c', 'a=x; while :; do a=$a$a; done'], resources: { memoryLimitBytes: limit } } });
        await rt.ok('ContainerStart', { sid, cid: 'hog' });
        const waited = await rt.ok('ContainerWait', { sid, cid: 'hog' }, { timeoutMs: 60_000 });
        expect(waited).toMatchObject({ exitStatus: 137, reason: 'OOMKilled' });
        expect(waited.message).toContain(`${limit} bytes (32 MiB)`);
        await rt.ok('ContainerDelete', { sid, cid: 'hog' });
      });
    }
  });
}
