// Faults injected for real into running guests, for every guest agent: the monitor turns
// them into one `fail` event, a failed sandbox that says why, and exit 255 for whatever
// was running; policies keep the sandbox or clean it up.
import { connect as tcpConnect, type Socket } from 'node:net';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { subjects } from '../../bus/subjects.js';
import { readEvents } from '../../bus/event-reader.js';
import type * as Bus from '../../bus/messages.gen.js';
import { useRuntime } from '../helpers/runtime.js';
import { sandboxProcesses } from '../helpers/processes.js';
import { GUEST_AGENTS } from './agents.js';

const rt = useRuntime({ host: 'faults' });

const ok = rt.ok;

/** Resolves with the sandbox's first event of a type, following the stream live. */
async function nextEvent(sid: string, type: string, timeoutMs = 15_000): Promise<Bus.Event> {
  const events = readEvents(rt.client.nc, { sandboxId: sid, follow: true });
  const timer = setTimeout(() => void events.return(undefined), timeoutMs);
  try {
    for await (const e of events) if (e.event.type === type && !e.event.containerId) return e.event;
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`no ${type} event for ${sid} within ${timeoutMs} ms`);
}

const eventsOf = (sid: string) => rt.eventsOf(sid);

function guestPid(sid: string): number {
  const pid = rt.host.host.registry.get(sid).backend.pid;
  if (!pid) throw new Error(`sandbox ${sid} has no guest pid`);
  return pid;
}

const signalQuietly = (pid: number, sig: NodeJS.Signals) => {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
};

for (const agent of GUEST_AGENTS) {
  describe(`monitor with the ${agent} agent`, () => {
    let n = 0;
    const sandbox = async (policy = 'keep', monitor = { intervalMs: 100, deadlineMs: 300 }) => {
      const id = `m${agent.slice(0, 4)}-${++n}`;
      await ok('SandboxCreate', {}, {
        sandbox: {
          id, agent, backend: 'namespace', monitor: { ...monitor, policy },
          containers: [{ id: 'web', args: ['sleep', '60'] }, { id: 'idle', args: ['sleep', '60'] }],
        },
        start: true,
      });
      return id;
    };

    it('SIGKILL of the guest agent: failed with guest-exited, exit 255 for running work', async () => {
      const sid = await sandbox();
      await ok('ContainerExec', { sid: sid, cid: 'web' }, { execId: 'ex', args: ['sleep', '60'] });
      await ok('ContainerStop', { sid: sid, cid: 'idle' });
      const failed = nextEvent(sid, 'fail');
      process.kill(guestPid(sid), 'SIGKILL');
      const fail = await failed;
      expect(fail).toMatchObject({ state: 'failed', reason: 'guest-exited', exitStatus: 137 });

      const status = await ok('SandboxStatus', { sid: sid });
      expect(status.sandbox).toMatchObject({ state: 'failed', failureReason: 'guest-exited' });
      expect(status.sandbox?.failureMessage).toMatch(/SIGKILL/);
      expect(Date.parse(status.sandbox!.failedAt!)).toBeGreaterThan(0);
      expect(status.sandbox?.containers?.map((c) => [c.id, c.state])).toEqual([['web', 'stopped'], ['idle', 'stopped']]);

      // A guest call on a failed sandbox fails fast, naming the state.
      const refused = await rt.client.request('ContainerExec', { sid: sid, cid: 'web' }, { args: ['true'] });
      expect(refused.error).toMatchObject({ code: 'FailedPrecondition', state: 'failed' });

      await ok('SandboxDelete', { sid: sid });
      const events = await eventsOf(sid);
      expect(events.filter((e) => e.type === 'fail')).toHaveLength(1);
      const exits = events.filter((e) => e.type === 'exit').map((e) => [e.containerId, e.execId ?? '', e.exitStatus]);
      // The container stopped by hand exited before; the rest report 255.
      expect(exits).toContainEqual(['web', '', 255]);
      expect(exits).toContainEqual(['web', 'ex', 255]);
      expect(exits.filter(([c, x]) => c === 'idle' && x === '')).toHaveLength(1);
      expect(await sandboxProcesses(sid)).toEqual([]);
    });

    it('SIGSTOP of the guest agent: failed with check-timeout', async () => {
      const sid = await sandbox();
      const pid = guestPid(sid);
      const failed = nextEvent(sid, 'fail');
      process.kill(pid, 'SIGSTOP');
      try {
        expect(await failed).toMatchObject({ reason: 'check-timeout', state: 'failed' });
        const status = await ok('SandboxStatus', { sid: sid });
        expect(status.sandbox?.failureMessage).toMatch(/300 ms/);
      } finally {
        signalQuietly(pid, 'SIGCONT');
      }
      await ok('SandboxDelete', { sid: sid });
      expect(await sandboxProcesses(sid)).toEqual([]);
    });

    it("the agent's socket closed: failed with agent-unreachable", async () => {
      const sid = await sandbox();
      const runDir = join(rt.host.runRoot, sid);
      const sockets = readdirSync(runDir).filter((f) => f.endsWith('.sock'));
      expect(sockets.length).toBeGreaterThan(0);
      const failed = nextEvent(sid, 'fail');
      for (const s of sockets) rmSync(join(runDir, s));
      // A connection held open is closed as well.
      await rt.host.host.registry.get(sid).agent.driver.disconnect();
      expect(await failed).toMatchObject({ reason: 'agent-unreachable', state: 'failed' });
      await ok('SandboxDelete', { sid: sid });
      expect(await sandboxProcesses(sid)).toEqual([]);
    });

    it('stop-and-delete: a failed sandbox is cleaned up by itself', async () => {
      const sid = await sandbox('stop-and-delete');
      const deleted = nextEvent(sid, 'delete');
      process.kill(guestPid(sid), 'SIGKILL');
      await deleted;
      const types = (await eventsOf(sid)).filter((e) => !e.containerId).map((e) => e.type);
      expect(types).toEqual(['create', 'start', 'fail', 'delete']);
      expect((await rt.client.request('SandboxStatus', { sid: sid })).error?.code).toBe('NotFound');
      expect(await sandboxProcesses(sid)).toEqual([]);
      expect(existsSync(join(rt.host.runRoot, sid))).toBe(false);
    });

    it('no failure while paused, monitoring back after resume', async () => {
      const sid = await sandbox('keep', { intervalMs: 50, deadlineMs: 200 });
      await ok('SandboxPause', { sid: sid });
      await new Promise((r) => setTimeout(r, 400));
      expect((await ok('SandboxStatus', { sid: sid })).sandbox?.state).toBe('paused');
      await ok('SandboxResume', { sid: sid });
      const pid = guestPid(sid);
      const failed = nextEvent(sid, 'fail');
      process.kill(pid, 'SIGSTOP');
      try {
        expect(await failed).toMatchObject({ reason: 'check-timeout' });
      } finally {
        signalQuietly(pid, 'SIGCONT');
      }
      const types = (await eventsOf(sid)).filter((e) => !e.containerId).map((e) => e.type);
      expect(types).toEqual(['create', 'start', 'pause', 'resume', 'fail']);
      await ok('SandboxDelete', { sid: sid });
    });

    it('a subscriber that never reads does not delay detection for others', async () => {
      // A raw client that subscribes to every event and then never reads its socket.
      const url = new URL(rt.server.url);
      const stuck: Socket = tcpConnect(Number(url.port), url.hostname);
      await new Promise<void>((resolve) => stuck.once('connect', () => resolve()));
      stuck.pause();
      stuck.write(`CONNECT {"verbose":false,"pedantic":false,"name":"never-reads"}\r\nSUB ${subjects.eventsAll()} 1\r\nPING\r\n`);
      try {
        const sid = await sandbox();
        const failed = nextEvent(sid, 'fail');
        process.kill(guestPid(sid), 'SIGKILL');
        expect(await failed).toMatchObject({ reason: 'guest-exited' });
        await ok('SandboxDelete', { sid: sid });
      } finally {
        stuck.destroy();
      }
    });
  });
}
