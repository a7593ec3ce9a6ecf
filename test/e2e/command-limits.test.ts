// A command's deadline reaches the guest call, a host that stops aborts what it has in
// flight, and an exec the guest refuses publishes nothing: against real guests frozen
// with SIGSTOP, for every guest agent.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hostAuth, startTestHost, useRuntime } from '../helpers/runtime.js';
import { sandboxProcesses } from '../helpers/processes.js';
import { GUEST_AGENTS } from './agents.js';

const DEADLINE_MS = 1500;
const rt = useRuntime({ host: 'limits', commandDeadlineMs: DEADLINE_MS });

// The monitor would fail a frozen guest first; here it looks once a minute.
const slowMonitor = { intervalMs: 60_000, deadlineMs: 60_000 };

const signalQuietly = (pid: number, sig: NodeJS.Signals) => {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
};

for (const agent of GUEST_AGENTS) {
  describe(`command limits with the ${agent} agent`, () => {
    const tag = agent.slice(0, 4);

    it("ends a guest call at the command's deadline (the host's default here), not the operation's own limit", async () => {
      const sid = `dl-${tag}`;
      await rt.ok('SandboxCreate', {}, {
        sandbox: { id: sid, agent, backend: 'namespace', monitor: slowMonitor, containers: [{ id: 'c', args: ['sleep', '60'] }] },
        start: true,
      });
      const pid = rt.host.host.registry.get(sid).backend.pid!;
      process.kill(pid, 'SIGSTOP');
      try {
        const reply = await rt.client.request('ContainerPs', { sid, cid: 'c' }, { format: 'json' });
        expect(reply.error).toMatchObject({ code: 'DeadlineExceeded', message: expect.stringMatching(/processListContainer in sandbox .* did not finish before the command's deadline/) });
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      // The guest is still fine once it runs again.
      expect((await rt.ok('ContainerPs', { sid, cid: 'c' }, { format: 'json' })).output).toMatch(/^\[\d/);
      await rt.ok('SandboxDelete', { sid }, { force: true });
    });

    it('answers a command in flight with Unavailable when its host stops, instead of leaving it hanging', async () => {
      const sid = `hs-${tag}`;
      const other = await startTestHost(rt.server.url, { host: `stopper-${tag}`, ...hostAuth(rt.server) });
      let pid = 0;
      try {
        await rt.ok('HostSandboxCreate', { host: `stopper-${tag}` }, {
          sandbox: { id: sid, agent, backend: 'namespace', monitor: slowMonitor, containers: [{ id: 'c', args: ['sleep', '60'] }] },
          start: true,
        });
        pid = other.host.registry.get(sid).backend.pid!;
        process.kill(pid, 'SIGSTOP');
        const pending = rt.client.request('ContainerPs', { sid, cid: 'c' }, { format: 'json' }, { timeoutMs: 20_000 });
        // Let the host take it in: the guest call then hangs on the frozen guest.
        await new Promise((r) => setTimeout(r, 300));
        await other.host.stop();
        const reply = await pending;
        expect(reply.error).toMatchObject({ code: 'Unavailable', message: expect.stringMatching(/host stopped serving/) });
      } finally {
        // The host detached and left its guest running, as it does on shutdown: end it here.
        for (const p of await sandboxProcesses(sid)) signalQuietly(p, 'SIGKILL');
        if (pid) signalQuietly(pid, 'SIGCONT');
        rmSync(join(other.runRoot, sid), { recursive: true, force: true });
      }
    });

    it('publishes nothing for an exec the guest refuses to start', async () => {
      const sid = `rx-${tag}`;
      await rt.ok('SandboxCreate', {}, {
        sandbox: { id: sid, agent, backend: 'namespace', containers: [{ id: 'c', args: ['sleep', '60'] }] },
        start: true,
      });
      const before = await rt.eventsOf(sid);
      const refused = await rt.client.request('ContainerExec', { sid, cid: 'c' }, { execId: 'nope', args: ['/no/such/binary'] });
      expect(refused.ok).toBe(false);
      expect(await rt.eventsOf(sid)).toEqual(before);
      // The id was never used: it can be taken by an exec that runs.
      await rt.ok('ContainerExec', { sid, cid: 'c' }, { execId: 'nope', args: ['true'] });
      expect((await rt.ok('ContainerWait', { sid, cid: 'c' }, { execId: 'nope', timeoutMs: 10_000 })).exitStatus).toBe(0);
      await rt.ok('SandboxDelete', { sid }, { force: true });
    });
  });
}
