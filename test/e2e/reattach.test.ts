// A runtime killed with SIGKILL and started again on the same state directory reattaches
// to its guests: running work stays running, exits that happened meanwhile are reported
// once with their status, a guest that died meanwhile fails its sandbox, and a sandbox
// caught creating or deleting is cleaned up or finished. The runtime runs as a process of
// its own (node dist/runtime/main.js) against a test nats-server, as users run it.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VcClient } from '../../bus/client.js';
import type * as Bus from '../../bus/messages.gen.js';
import { startTestServer, type TestServer } from '../helpers/nats.js';
import { connectClient } from '../helpers/runtime.js';
import { startHostProcess, type HostProcess } from '../helpers/host-process.js';
import { alive, sandboxProcesses } from '../helpers/processes.js';

const HOST = 'reattach';
let server: TestServer;
let client: VcClient;
let stateDir: string;
let runtime: HostProcess | undefined;
const created = new Set<string>();

const start = async () => (runtime = await startHostProcess(client, { servers: server.url, host: HOST, stateDir, creds: server.auth!.host }));
const runDir = (sid: string) => join(stateDir, 'run', sid);

beforeAll(async () => {
  server = await startTestServer();
  client = await connectClient(server.url, server.auth!.operator);
  stateDir = mkdtempSync(join(tmpdir(), 'vc-reattach-'));
  await start();
});

afterAll(async () => {
  // Whatever a failed test left: deleted through the runtime, then anything still there killed.
  for (const sid of created) await client.request('SandboxDelete', { sid }, { force: true }).catch(() => {});
  await runtime?.stop();
  for (const sid of created) for (const pid of await sandboxProcesses(sid)) process.kill(pid, 'SIGKILL');
  await client?.close();
  await server?.dispose();
  rmSync(stateDir, { recursive: true, force: true });
});

const ok = <T>(p: Promise<T>) => p;

async function events(sid: string): Promise<Bus.Event[]> {
  const out: Bus.Event[] = [];
  for await (const e of client.events({ sandboxId: sid })) out.push(e.event);
  return out;
}

/** Polls until `check` returns a value (bounded by the test's own timeout). */
async function until<T>(check: () => Promise<T | undefined>, what: string, tries = 300): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await check();
    if (v !== undefined) return v;
    await sleep(50);
  }
  if (process.env.TEST_LOG_LEVEL) {
    const { execSync } = await import('node:child_process');
    process.stderr.write(execSync('ps -eo pid,ppid,args | grep -E "sleep|kata|hyper" | grep -v grep').toString());
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The host pid of the sandbox's process running `argv`. */
async function processRunning(sid: string, argv: string[]): Promise<number | undefined> {
  for (const pid of await sandboxProcesses(sid)) {
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').slice(0, -1);
    // The guest runs a program by its path (/bin/sleep for sleep).
    if (cmd.length === argv.length && cmd[0]!.split('/').pop() === argv[0] && cmd.slice(1).join('\0') === argv.slice(1).join('\0')) return pid;
  }
  return undefined;
}

/** The host pid of the sandbox's container init held at its start gate (created, not started) for `program`. */
async function gateOf(sid: string, program: string): Promise<number | undefined> {
  for (const pid of await sandboxProcesses(sid)) {
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (cmd.includes('va-gate') && cmd.includes(program)) return pid;
  }
  return undefined;
}

/** Created before the kill, started after the restart: it must run in the container the guest already made. */
const LATER = ['sh', '-c', 'echo later; exec sleep 3005'];

/** Prints a numbered line for each SIGUSR1 (the trap runs between sleeps). */
const TALK = ['sh', '-c', "n=0; trap 'n=$((n+1)); echo usr1-$n' USR1; echo started; while :; do sleep 1; done"];

const logsOf = async (sid: string, cid: string) => (await client.call('ContainerLogs', { sid, cid })).stdout ?? '';

const exitsOf = (all: Bus.Event[], cid: string, execId?: string) =>
  all.filter((e) => e.type === 'exit' && e.containerId === cid && (e.execId ?? '') === (execId ?? ''));

async function createSandbox(sid: string, agent: 'kata' | 'hyperstart' | 'noop', containers: Array<{ id: string; args: string[] }>): Promise<void> {
  created.add(sid);
  await ok(client.call('SandboxCreate', {}, { sandbox: { id: sid, agent, backend: agent === 'noop' ? 'none' : 'namespace', monitor: { intervalMs: 200, deadlineMs: 2000 }, containers }, start: true }));
}

describe('kill -9 of the runtime, then a restart on the same state directory', () => {
  const step = (what: string) => process.env.TEST_LOG_LEVEL && process.stderr.write(`reattach test: ${what}\n`);
  it('reattaches kata, hyperstart and noop sandboxes: running work stays, downtime exits are reported once, dead guests fail', async () => {
    const guests = ['kata', 'hyperstart'] as const;
    for (const agent of guests) {
      await createSandbox(`r-${agent}`, agent, [
        { id: 'keep', args: ['sleep', '3001'] },
        { id: 'dies', args: ['sleep', '3002'] },
        { id: 'talk', args: TALK },
      ]);
      await client.call('ContainerExec', { sid: `r-${agent}`, cid: 'keep' }, { execId: 'ex', args: ['sleep', '3003'] });
      await createSandbox(`g-${agent}`, agent, [{ id: 'c', args: ['sleep', '3004'] }]);
      await client.call('ContainerCreate', { sid: `r-${agent}` }, { container: { id: 'later', args: LATER } });
    }
    await createSandbox('r-noop', 'noop', [{ id: 'c', args: ['sleep', '1'] }]);
    await createSandbox('m-kata', 'kata', []);
    for (const agent of guests) await until(() => processRunning(`r-${agent}`, ['sleep', '3002']), `${agent} container dies to run`);
    for (const agent of guests) await until(async () => ((await logsOf(`r-${agent}`, 'talk')).includes('started') ? true : undefined), `${agent} talk output`);
    // Both guests made the created container already (hyperstart through PREPARECONTAINER): its init waits at the gate.
    const gates = new Map<string, number>();
    for (const agent of guests) gates.set(agent, await until(() => gateOf(`r-${agent}`, LATER[2]!), `${agent} created container held at its gate`));

    step('created');
    await runtime!.kill9();

    // While no runtime is attached: one container of each sandbox is killed, and one guest dies.
    for (const agent of guests) {
      process.kill((await processRunning(`r-${agent}`, ['sleep', '3002']))!, 'SIGKILL');
      // Output written while no runtime is attached.
      process.kill((await processRunning(`r-${agent}`, TALK))!, 'SIGUSR1');
      const guest = Number(readFileSync(join(runDir(`g-${agent}`), 'guest.pid'), 'utf8'));
      process.kill(guest, 'SIGKILL');
      await until(async () => (alive(guest) ? undefined : true), `the ${agent} guest to die`);
    }
    await sleep(300);

    step('killed during downtime');
    await start();
    step('restarted');

    for (const agent of guests) {
      const sid = `r-${agent}`;
      // The downtime exit arrives once the host caught up with the guest.
      const exit = await until(async () => exitsOf(await events(sid), 'dies')[0], `${sid} dies exit`);
      expect(exit).toMatchObject({ exitStatus: 137, state: 'stopped' });
      expect(exit.exitStatusUnknown).toBeFalsy();
      const status = await client.call('SandboxStatus', { sid });
      expect(status.sandbox?.state).toBe('running');
      expect(status.sandbox?.containers?.map((c) => [c.id, c.state])).toEqual([['keep', 'running'], ['dies', 'stopped'], ['talk', 'running'], ['later', 'ready']]);
      // Output of a process the restarted runtime adopted: written during the downtime, and after the restart.
      await until(async () => ((await logsOf(sid, 'talk')).includes('usr1-1\n') ? true : undefined), `${sid} output written during the downtime`);
      await client.call('ContainerKill', { sid, cid: 'talk' }, { signal: 10 });
      await until(async () => ((await logsOf(sid, 'talk')).includes('usr1-2\n') ? true : undefined), `${sid} output written after the restart`);
      expect(await processRunning(sid, ['sleep', '3001'])).toBeGreaterThan(0);
      expect(await processRunning(sid, ['sleep', '3003'])).toBeGreaterThan(0);

      // The container created before the kill starts now: the init held at its gate leaves it.
      const gate = gates.get(agent)!;
      expect(alive(gate)).toBe(true);
      await client.call('ContainerStart', { sid, cid: 'later' });
      await until(async () => ((await logsOf(sid, 'later')) === 'later\n' ? true : undefined), `${sid} later output`);
      expect((await readFile(`/proc/${gate}/cmdline`, 'utf8')).split('\0')).not.toContain('va-gate');
      expect(await processRunning(sid, ['sleep', '3005'])).toBeGreaterThan(0);

      // The guest that died meanwhile: failed, its container's exit unknown.
      const g = await client.call('SandboxStatus', { sid: `g-${agent}` });
      expect(g.sandbox).toMatchObject({ state: 'failed', failureReason: 'guest-exited' });
      expect(g.sandbox?.containers?.map((c) => [c.id, c.state, c.exitStatus, !!c.exitStatusUnknown])).toEqual([['c', 'stopped', 255, true]]);
    }
    expect((await client.call('SandboxStatus', { sid: 'r-noop' })).sandbox?.state).toBe('running');

    // The monitor runs again (a restored snapshot has no timers): a guest that stops
    // answering after the restart is found by its health checks.
    const frozen = Number(readFileSync(join(runDir('m-kata'), 'guest.pid'), 'utf8'));
    process.kill(frozen, 'SIGSTOP');
    try {
      const failed = await until(async () => {
        const s = (await client.call('SandboxStatus', { sid: 'm-kata' })).sandbox;
        return s?.state === 'failed' ? s : undefined;
      }, 'the monitor to find the frozen guest');
      expect(failed.failureReason).toBe('check-timeout');
    } finally {
      process.kill(frozen, 'SIGCONT');
    }
    await client.call('SandboxDelete', { sid: 'm-kata' }, { force: true });
    created.delete('m-kata');

    // Commands work on the reattached sandboxes: an exec exit, a stop, a delete.
    for (const agent of guests) {
      const sid = `r-${agent}`;
      await client.call('ContainerStop', { sid, cid: 'keep' });
      await client.call('ContainerStop', { sid, cid: 'later' });
      await client.call('SandboxDelete', { sid }, { force: true });
      await client.call('SandboxDelete', { sid: `g-${agent}` }, { force: true });
      const all = await events(sid);
      // Exactly once each, in the order of a container: the downtime exit and the stop's.
      expect(exitsOf(all, 'dies')).toHaveLength(1);
      expect(exitsOf(all, 'keep')).toHaveLength(1);
      expect(exitsOf(all, 'later').map((e) => e.exitStatus)).toEqual([143]);
      expect(all.map((e) => e.seq)).toEqual(all.map((_, i) => i + 1));
      expect(await sandboxProcesses(sid)).toEqual([]);
      expect(await sandboxProcesses(`g-${agent}`)).toEqual([]);
      expect(existsSync(runDir(sid))).toBe(false);
      created.delete(sid);
      created.delete(`g-${agent}`);
    }
    await client.call('SandboxDelete', { sid: 'r-noop' }, { force: true });
    created.delete('r-noop');
    expect((await client.call('SandboxList', {}, {})).sandboxes ?? []).toEqual([]);
  }, 180_000);

  it('a sandbox caught creating is cleaned up, and its id can be used again', async () => {
    const sid = 'half-created';
    created.add(sid);
    const pending = client.request('SandboxCreate', {}, { sandbox: { id: sid, agent: 'kata', backend: 'namespace', containers: [] }, start: false }).catch(() => undefined);
    // The guest has been started (its pid file is written), the create has not finished.
    await until(async () => (existsSync(join(runDir(sid), 'guest.pid')) ? true : undefined), 'the guest to start');
    await runtime!.kill9();
    await pending;
    const guest = Number(readFileSync(join(runDir(sid), 'guest.pid'), 'utf8'));
    expect(alive(guest)).toBe(true);

    await start();
    const status = await client.request('SandboxStatus', { sid });
    expect(status.error?.code).toBe('NotFound');
    expect(alive(guest)).toBe(false);
    expect(await sandboxProcesses(sid)).toEqual([]);
    expect(existsSync(runDir(sid))).toBe(false);
    await createSandbox(sid, 'kata', []);
    await client.call('SandboxDelete', { sid }, { force: true });
    created.delete(sid);
  }, 60_000);

  it('a sandbox caught deleting is finished deleting', async () => {
    const sid = 'half-deleted';
    created.add(sid);
    await client.call('SandboxCreate', {}, { sandbox: { id: sid, agent: 'kata', backend: 'namespace', containers: [{ id: 'c', args: ['sleep', '3005'] }] }, start: false });
    // A guest stopped with SIGSTOP answers nothing: the delete hangs in its first guest call.
    const guest = Number(readFileSync(join(runDir(sid), 'guest.pid'), 'utf8'));
    process.kill(guest, 'SIGSTOP');
    const pending = client.request('SandboxDelete', { sid }, { force: true }).catch(() => undefined);
    try {
      await until(async () => {
        const list = await client.call('SandboxList', {}, {});
        return list.sandboxes?.find((s) => s.id === sid && s.state === 'deleting');
      }, 'the delete to begin');
      await runtime!.kill9();
    } finally {
      process.kill(guest, 'SIGCONT');
    }
    await pending;
    expect(alive(guest)).toBe(true);

    await start();
    await until(async () => ((await client.request('SandboxStatus', { sid })).error?.code === 'NotFound' ? true : undefined), 'the delete to finish');
    expect(alive(guest)).toBe(false);
    expect(await sandboxProcesses(sid)).toEqual([]);
    expect(existsSync(runDir(sid))).toBe(false);
    const all = await events(sid);
    expect(all.filter((e) => e.type === 'delete' && !e.containerId)).toHaveLength(1);
    expect(all.map((e) => e.seq)).toEqual(all.map((_, i) => i + 1));
    created.delete(sid);
  }, 60_000);
});
