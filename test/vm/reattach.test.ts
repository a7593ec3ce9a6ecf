// A runtime killed with SIGKILL while VM sandboxes run, then started again on the same
// state directory: the VMs outlived it (same qemu), the new runtime reconnects to their
// channels (kata over yamux, hyperstart through a new relay), running containers stay
// running and their output is collected again, an exit during the downtime is reported
// once with its status, and delete leaves nothing. A warm-pool VM the killed runtime left
// is removed by the next start, and a VM whose qemu died meanwhile fails its sandbox
// (guest-exited). The runtime runs as a process of its own; one boot per VM, shared by
// every assertion.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VcClient } from '../../bus/client.js';
import type * as Bus from '../../bus/messages.gen.js';
import { vmCacheDir } from '../../runtime/host.js';
import { startTestServer, type TestServer } from '../helpers/nats.js';
import { connectClient } from '../helpers/runtime.js';
import { startHostProcess, type HostProcess } from '../helpers/host-process.js';
import { alive } from '../helpers/processes.js';
import { busyboxRootfs } from '../helpers/rootfs.js';
import { BOOT_MS, mountsUnder, qemuProcessesUnder, vmSkipReason } from './helpers.js';

const HOST = 'vm-reattach';
const AGENTS = ['kata', 'hyperstart'] as const;
/** A kata VM sandbox whose qemu is killed while no runtime runs. */
const GONE = 'vmr-gone';
const skip = vmSkipReason();

describe.skipIf(skip !== undefined)(`VM sandboxes across a kill -9 of the runtime${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let server: TestServer;
  let client: VcClient;
  let stateDir: string;
  let runtime: HostProcess | undefined;
  /** Every runtime started, so that one left running by a failed step is stopped too. */
  const runtimes: HostProcess[] = [];
  const rootfs = new Map<string, string>();
  const sid = (agent: string) => `vmr-${agent}`;
  const vmRoot = () => join(stateDir, 'run', '.vm');
  const vmDirs = () => (existsSync(vmRoot()) ? readdirSync(vmRoot()) : []);
  const qemuPid = (id: string) => Number(readFileSync(join(vmRoot(), id, 'qemu.pid'), 'utf8'));
  // The kernel, image and KVM verdict the other VM suites prepared in this checkout.
  // The command deadline is the boots' bound: four TCG boots at once on a busy 2-core CI
  // machine may take longer than the host's default.
  const start = async (env: Record<string, string> = {}) => {
    runtime = await startHostProcess(client, {
      servers: server.url,
      host: HOST,
      stateDir,
      creds: server.auth!.host,
      env: { VC_VM_CACHE: resolve(vmCacheDir()), VC_COMMAND_TIMEOUT_MS: String(BOOT_MS), ...env },
    });
    runtimes.push(runtime);
    return runtime;
  };
  const call: VcClient['call'] = (name, params, request, opts) => client.call(name, params, request, { timeoutMs: BOOT_MS, ...opts });
  const status = async (agent: string) => (await call('SandboxStatus', { sid: sid(agent) })).sandbox!;
  const logs = async (agent: string, cid: string) => (await call('ContainerLogs', { sid: sid(agent), cid })).stdout ?? '';
  const events = async (agent: string) => {
    const out: Bus.Event[] = [];
    for await (const e of client.events({ sandboxId: sid(agent) })) out.push(e.event);
    return out;
  };
  async function until<T>(check: () => Promise<T | undefined> | T | undefined, what: string, ms = BOOT_MS): Promise<T> {
    for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) {
      const v = await check();
      if (v !== undefined) return v;
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  beforeAll(async () => {
    server = await startTestServer();
    client = await connectClient(server.url, server.auth!.operator);
    stateDir = mkdtempSync(join(tmpdir(), 'vc-vmr-'));
    // A rootfs per sandbox: the host writes into it (it reaches the VM over 9p) to end a container while no runtime runs.
    for (const agent of [...AGENTS, GONE]) rootfs.set(agent, busyboxRootfs('', ['sh', 'sleep', 'touch', 'test', '[']));
  });

  afterAll(async () => {
    for (const id of [...AGENTS.map(sid), GONE]) await client?.request('SandboxDelete', { sid: id }, { force: true }, { timeoutMs: 60_000 }).catch(() => {});
    for (const r of runtimes) await r.stop();
    // qemu processes of this test's own state directory only.
    if (stateDir) for (const pid of qemuProcessesUnder(stateDir)) process.kill(pid, 'SIGKILL');
    await client?.close();
    await server?.dispose();
    for (const dir of rootfs.values()) rmSync(dir, { recursive: true, force: true });
    if (stateDir && mountsUnder(stateDir).length === 0) rmSync(stateDir, { recursive: true, force: true });
  });

  const before = new Map<string, number>();
  let poolVm = '';
  let poolPid = 0;

  it('boots kata and hyperstart VM sandboxes and a warm-pool VM, then the runtime is killed: every qemu outlives it', { timeout: 2 * BOOT_MS }, async () => {
    await start({ VC_VM_POOL: 'kata:1' });
    const gone = call('SandboxCreate', {}, {
      sandbox: { id: GONE, agent: 'kata', backend: 'vm', containers: [{ id: 'c', args: ['/bin/sh', '-c', 'while :; do sleep 1; done'], rootfs: rootfs.get(GONE)! }] },
      start: true,
    });
    await Promise.all(
      AGENTS.map((agent) =>
        call('SandboxCreate', {}, {
          sandbox: {
            id: sid(agent),
            agent,
            backend: 'vm',
            monitor: { intervalMs: 1000, deadlineMs: 15_000 },
            containers: [
              // Prints a line for each SIGUSR1, the shell's trap running between sleeps.
              { id: 'keep', args: ['sh', '-c', 'n=0; trap \'n=$((n+1)); echo usr1-$n\' USR1; echo started; while :; do sleep 1; done'] },
              { id: 'dies', args: ['/bin/sh', '-c', 'while [ ! -e /go ]; do sleep 1; done; touch /gone; exit 7'], rootfs: rootfs.get(agent)! },
            ],
          },
          start: true,
        }),
      ),
    );
    before.set(GONE, (await gone).sandbox!.vm!.pid!);
    for (const agent of AGENTS) {
      const s = await status(agent);
      expect(s.state).toBe('running');
      before.set(agent, s.vm!.pid!);
      await until(async () => ((await logs(agent, 'keep')).includes('started') ? true : undefined), `${agent} output`);
    }
    // The pool's VM, booted beside them: ready, no sandbox has it.
    await until(async () => {
      const found = await client.discover('INFO', 500);
      const meta = found.map((f) => (f.metadata ?? {}) as Record<string, string>).find((m) => m.host === HOST);
      return Number(meta?.['vm.pool.ready']) >= 1 ? true : undefined;
    }, 'the pool VM');
    const idle = vmDirs().filter((id) => !existsSync(join(vmRoot(), id, 'sandbox')));
    expect(idle).toHaveLength(1);
    poolVm = idle[0]!;
    poolPid = qemuPid(poolVm);

    await runtime!.kill9();
    for (const pid of [...before.values(), poolPid]) expect(alive(pid)).toBe(true);
  });

  it('while no runtime runs, a container in each VM exits, and one VM dies', { timeout: BOOT_MS }, async () => {
    for (const agent of AGENTS) writeFileSync(join(rootfs.get(agent)!, 'go'), '');
    for (const agent of AGENTS) await until(() => (existsSync(join(rootfs.get(agent)!, 'gone')) ? true : undefined), `${agent} dies to exit`);
    process.kill(before.get(GONE)!, 'SIGKILL');
    await until(() => (alive(before.get(GONE)!) ? undefined : true), 'the killed qemu to be gone');
  });

  it('the next start removes the pool VM and reattaches the sandboxes to the same qemu', { timeout: BOOT_MS }, async () => {
    await start();
    expect(alive(poolPid)).toBe(false);
    expect(vmDirs()).not.toContain(poolVm);
    for (const agent of AGENTS) {
      const s = await status(agent);
      expect(s.state, `${agent}: ${s.failureReason} ${s.failureMessage}`).toBe('running');
      expect(s.vm?.pid).toBe(before.get(agent));
    }
    const g = (await call('SandboxStatus', { sid: GONE })).sandbox!;
    expect(g).toMatchObject({ state: 'failed', failureReason: 'guest-exited' });
    expect(g.containers?.map((c) => [c.id, c.state, c.exitStatus, !!c.exitStatusUnknown])).toEqual([['c', 'stopped', 255, true]]);
  });

  it('reports the downtime exit once with its status; the running container stays, and what it prints now is collected', { timeout: BOOT_MS }, async () => {
    for (const agent of AGENTS) {
      const exit = await until(async () => (await events(agent)).find((e) => e.type === 'exit' && e.containerId === 'dies'), `${agent} dies exit`);
      expect(exit).toMatchObject({ exitStatus: 7, state: 'stopped' });
      expect(exit.exitStatusUnknown).toBeFalsy();
      const s = await status(agent);
      expect(s.containers?.map((c) => [c.id, c.state])).toEqual([
        ['keep', 'running'],
        ['dies', 'stopped'],
      ]);
      await call('ContainerKill', { sid: sid(agent), cid: 'keep' }, { signal: 10 });
    }
    for (const agent of AGENTS) await until(async () => ((await logs(agent, "keep")).includes("usr1-1") ? true : undefined), `${agent} output after the restart`, 60_000);
  });

  it('stop and delete leave no qemu, socket, shared directory or VM directory', { timeout: BOOT_MS }, async () => {
    for (const agent of AGENTS) {
      await call('SandboxDelete', { sid: sid(agent) }, { force: true });
      expect(alive(before.get(agent)!)).toBe(false);
      expect(existsSync(join(stateDir, 'run', sid(agent)))).toBe(false);
      const all = await events(agent);
      expect(all.filter((e) => e.type === 'exit' && e.containerId === 'dies')).toHaveLength(1);
      expect(all.map((e) => e.seq)).toEqual(all.map((_, i) => i + 1));
    }
    // The dead VM's directory goes too: what was staged in its share is unmounted first.
    await call('SandboxDelete', { sid: GONE }, { force: true });
    expect(existsSync(join(stateDir, 'run', GONE))).toBe(false);
    expect(vmDirs()).toEqual([]);
    expect(qemuProcessesUnder(stateDir)).toEqual([]);
    expect(mountsUnder(stateDir)).toEqual([]);
  });
});
