// End-to-end scenarios with real guests: one scenario list, run for every agent that
// talks to a guest, on the namespace backend, through the bus. Processes really run in
// the sandbox; output, exit status and signals come back as replies and events.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type * as Bus from '../../bus/messages.gen.js';
import { useRuntime } from '../helpers/runtime.js';
import { sandboxProcesses } from '../helpers/processes.js';
import { busyboxRootfs } from '../helpers/rootfs.js';
import { GUEST_AGENTS } from './agents.js';

const rt = useRuntime({ host: 'e2e' });
let rootfs: string;

beforeAll(() => {
  rootfs = busyboxRootfs('inside the rootfs\n');
});

afterAll(() => {
  if (rootfs) rmSync(rootfs, { recursive: true, force: true });
});

const ok = rt.ok;

const eventsOf = (sid: string) => rt.eventsOf(sid);

for (const agent of GUEST_AGENTS) {
  describe(`${agent} agent on the namespace backend`, () => {
    let n = 0;
    const sandbox = async (containers: Bus.ContainerSpec[] = []) => {
      const id = `${agent.slice(0, 4)}-${++n}`;
      const reply = await ok('SandboxCreate', {}, {
        sandbox: { id, agent, backend: 'namespace', hostname: `host-${id}`, containers },
        start: true,
      });
      expect(reply.sandbox).toMatchObject({ state: 'running', agent, backend: 'namespace' });
      return id;
    };
    const wait = (sid: string, cid: string, execId?: string) =>
      ok('ContainerWait', { sid: sid, cid: cid }, execId ? { execId, timeoutMs: 20_000 } : { timeoutMs: 20_000 });
    const destroy = (sid: string) => ok('SandboxDelete', { sid: sid }, { force: true });

    it('returns output and exit status, stdout and stderr kept apart', async () => {
      const sid = await sandbox([{ id: 'c1', args: ['sh', '-c', 'echo hello; echo oops >&2; exit 3'] }]);
      expect(await wait(sid, 'c1')).toMatchObject({ exitStatus: 3 });
      const logs = await ok('ContainerLogs', { sid: sid, cid: 'c1' });
      expect(logs.stdout).toBe('hello\n');
      expect(logs.stderr).toBe('oops\n');
      const status = await ok('ContainerStatus', { sid: sid, cid: 'c1' });
      expect(status.container).toMatchObject({ state: 'stopped', exitStatus: 3, hasExitStatus: true });
      await destroy(sid);
      const events = await eventsOf(sid);
      const c1 = events.filter((e) => e.containerId === 'c1').map((e) => e.type);
      expect(c1).toEqual(['create', 'start', 'exit', 'delete']);
      const exit = events.find((e) => e.type === 'exit')!;
      expect(exit.exitStatus).toBe(3);
      expect(Date.parse(exit.exitedAt!)).toBeGreaterThan(Date.parse(events[0]!.time!) - 1);
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    });

    it('reports 143 after SIGTERM to a sleeping container', async () => {
      const sid = await sandbox([{ id: 'sleeper', args: ['sleep', '60'] }]);
      await ok('ContainerKill', { sid: sid, cid: 'sleeper' }, { signal: 15 });
      expect(await wait(sid, 'sleeper')).toMatchObject({ exitStatus: 143 });
      await destroy(sid);
      const exit = (await eventsOf(sid)).find((e) => e.type === 'exit' && e.containerId === 'sleeper');
      expect(exit?.exitStatus).toBe(143);
    });

    it('execs in a running container and reports the exec in containerd order', async () => {
      const sid = await sandbox([{ id: 'box', args: ['sleep', '60'] }]);
      const exec = await ok('ContainerExec', { sid: sid, cid: 'box' }, {
        execId: 'e1',
        args: ['sh', '-c', 'echo from-exec; exit 7'],
      });
      expect(exec.execId).toBe('e1');
      expect(exec.pid).toBeGreaterThan(0);
      expect(await wait(sid, 'box', 'e1')).toMatchObject({ exitStatus: 7 });
      const logs = await ok('ContainerLogs', { sid: sid, cid: 'box' }, { execId: 'e1' });
      expect(logs.stdout).toBe('from-exec\n');
      await destroy(sid);
      const execEvents = (await eventsOf(sid)).filter((e) => e.execId === 'e1');
      expect(execEvents.map((e) => e.type)).toEqual(['exec-added', 'exec-started', 'exit']);
      expect(execEvents[2]!.exitStatus).toBe(7);
    });

    it('lists the container processes with ps, as json and as a table', async () => {
      const sid = await sandbox([{ id: 'busy', args: ['sleep', '61'] }]);
      await ok('ContainerExec', { sid: sid, cid: 'busy' }, { execId: 'side', args: ['sleep', '62'] });
      const json = await ok('ContainerPs', { sid: sid, cid: 'busy' }, { format: 'json' });
      const pids = JSON.parse(json.output!) as number[];
      expect(pids).toHaveLength(2);
      const table = await ok('ContainerPs', { sid: sid, cid: 'busy' }, { format: 'table' });
      const lines = table.output!.trim().split('\n');
      expect(lines[0]).toMatch(/PID/);
      expect(lines.slice(1).some((l) => l.includes('sleep 61'))).toBe(true);
      expect(lines.slice(1).some((l) => l.includes('sleep 62'))).toBe(true);
      expect(lines).toHaveLength(3);
      await destroy(sid);
    });

    it('runs in a container of its own inside the sandbox: its hostname, its own PID 1 (the init), its own processes only', async () => {
      const sid = await sandbox([{ id: 'probe', args: ['sh', '-c', 'hostname; tr "\\0" " " < /proc/1/cmdline; echo; ls /proc | grep -c "^[0-9]"'] }]);
      expect(await wait(sid, 'probe')).toMatchObject({ exitStatus: 0 });
      const [hostname, pid1, count] = (await ok('ContainerLogs', { sid: sid, cid: 'probe' })).stdout!.trim().split('\n');
      expect(hostname).toBe(`host-${sid}`);
      // The container's own pid namespace: its PID 1 is the container init running the command, not the guest agent.
      expect(pid1).toMatch(/^\/dev\/\.virtactors\/init -- \/bin\/sh -c hostname/);
      expect(pid1).not.toMatch(/main\.js/);
      // The init, the shell and its children (ls, grep): nothing of the guest's.
      expect(Number(count)).toBeLessThan(6);
      await destroy(sid);
    });

    it('runs a container with a root path inside that rootfs only', async () => {
      const sid = await sandbox([{ id: 'rooted', args: ['/bin/sh', '-c', 'cat /marker; ls /'], rootfs }]);
      expect(await wait(sid, 'rooted')).toMatchObject({ exitStatus: 0 });
      const out = (await ok('ContainerLogs', { sid: sid, cid: 'rooted' })).stdout!;
      expect(out.split('\n')[0]).toBe('inside the rootfs');
      // Its own files, and the mount points the OCI runtime makes for /dev, /proc and /sys.
      expect(out.split('\n').slice(1).filter(Boolean).sort()).toEqual(['bin', 'dev', 'marker', 'proc', 'sys']);
      await destroy(sid);
    });

    it('pauses and resumes a container', async () => {
      const sid = await sandbox([{ id: 'p', args: ['sleep', '60'] }]);
      expect((await ok('ContainerPause', { sid: sid, cid: 'p' })).container?.state).toBe('paused');
      expect((await ok('ContainerResume', { sid: sid, cid: 'p' })).container?.state).toBe('running');
      await ok('ContainerKill', { sid: sid, cid: 'p' }, { signal: 9 });
      expect(await wait(sid, 'p')).toMatchObject({ exitStatus: 137 });
      await destroy(sid);
    });

    it('reports container stats, or says the agent has none', async () => {
      const sid = await sandbox([{ id: 's', args: ['sh', '-c', 'sleep 60 & sleep 60'] }]);
      const reply = await rt.client.request('ContainerStats', { sid: sid, cid: 's' });
      if (agent === 'kata') {
        expect(reply.ok).toBe(true);
        const stats = reply.stats as Bus.ContainerStats;
        expect(stats.pidsCurrent).toBeGreaterThanOrEqual(2);
        expect(stats.memoryUsageBytes).toBeGreaterThan(0);
      } else {
        // Unimplemented, not Unavailable: retrying will not make the agent report stats.
        expect(reply.error).toMatchObject({ code: 'Unimplemented', message: expect.stringMatching(/hyperstart agent reports no container stats/) });
      }
      await destroy(sid);
    });

    it('leaves no process and no mount behind after stop and delete', async () => {
      const sid = await sandbox([{ id: 'a', args: ['sleep', '60'] }, { id: 'b', args: ['sh', '-c', 'sleep 60 & sleep 60'] }]);
      const runDir = join(rt.host.runRoot, sid);
      expect((await sandboxProcesses(sid)).length).toBeGreaterThan(0);
      const stopped = await ok('SandboxStop', { sid: sid });
      expect(stopped.sandbox?.containers?.map((c) => c.state)).toEqual(['stopped', 'stopped']);
      await ok('SandboxDelete', { sid: sid });
      expect(await sandboxProcesses(sid)).toEqual([]);
      expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(runDir);
      expect(existsSync(runDir)).toBe(false);
      const exits = (await eventsOf(sid)).filter((e) => e.type === 'exit').map((e) => [e.containerId, e.exitStatus]);
      expect(exits.map(([c]) => c).sort()).toEqual(['a', 'b']);
    });
  });
}
