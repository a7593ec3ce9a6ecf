// One scenario list for a sandbox in a VM, run for each agent (kata.test.ts,
// hyperstart.test.ts), on a runtime with a warm pool of one VM of that agent. Booted VMs
// are shared across the tests of a file: the sandbox takes the pool's VM (handover), runs
// its containers, is stopped (its VM destroyed) and started again (on the VM the pool
// booted meanwhile), and that VM's qemu is then killed. Under TCG a boot takes a core for
// tens of seconds, so the file boots as few VMs as it can and stays honest.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type * as Bus from '../../bus/messages.gen.js';
import { useRuntime, type RuntimeContext } from '../helpers/runtime.js';
import { alive } from '../helpers/processes.js';
import { sample, scrape } from '../helpers/metrics.js';
import { busyboxRootfs } from '../helpers/rootfs.js';
import { BOOT_MS, hostMetadata, mountsUnder, poolReady, qemuProcessesUnder, refillStarted, vmOk, vmSkipReason } from './helpers.js';

/** What an agent's own scenarios (run on the suite's sandbox, while it runs) get. */
export interface VmScenario {
  rt: RuntimeContext;
  ok: RuntimeContext['ok'];
  sid: string;
}

/** `more` adds an agent's own scenarios, on the same running sandbox (no VM of their own). */
export function vmSuite(agent: 'kata' | 'hyperstart', more?: (vm: VmScenario) => void): void {
  const skip = vmSkipReason();
  // Only where qemu cannot run at all; `npm run setup` installs it, so CI runs these.
  describe.skipIf(skip !== undefined)(`${agent} sandbox in a VM${skip ? ` (skipped: ${skip})` : ''}`, () => {
    const rt: RuntimeContext = useRuntime({ host: `vm-${agent}`, vm: { pool: { [agent]: 1 } }, commandDeadlineMs: BOOT_MS, metricsAddr: { host: '127.0.0.1', port: 0 } });
    const sid = `${agent}-vm`;
    // A TCG guest on a busy 2-core machine can take seconds to answer a health check.
    const monitor = { intervalMs: 1000, deadlineMs: 15_000 };
    let rootfs: string;
    let secretDir: string;
    let firstPid = 0;
    const ok: RuntimeContext['ok'] = (name, params, request) => vmOk(rt, name, params, request);
    const run = async (cid: string, args: string[], extra: Partial<Bus.ContainerSpec> = {}) => {
      const s = await status();
      expect(s.state, `the sandbox is ${s.state}: ${s.failureReason} ${s.failureMessage}`).toBe('running');
      await ok('ContainerCreate', { sid }, { container: { id: cid, args, ...extra } });
      await ok('ContainerStart', { sid, cid });
      const { exitStatus } = await ok('ContainerWait', { sid, cid }, { timeoutMs: 60_000 });
      const logs = await ok('ContainerLogs', { sid, cid });
      return { exitStatus, stdout: logs.stdout ?? '', stderr: logs.stderr ?? '' };
    };
    const status = async () => (await ok('SandboxStatus', { sid })).sandbox!;
    const vmDirs = () => (existsSync(join(rt.host.runRoot, '.vm')) ? readdirSync(join(rt.host.runRoot, '.vm')) : []);

    beforeAll(() => {
      // Its marker can only reach the VM through the 9p share.
      rootfs = busyboxRootfs('inside the staged rootfs\n', ['sh', 'ls', 'cat']);
      secretDir = mkdtempSync(join(tmpdir(), 'vc-vm-secret-'));
      writeFileSync(join(secretDir, 'secret.txt'), 'host only\n');
    });
    afterAll(() => {
      if (rootfs) rmSync(rootfs, { recursive: true, force: true });
      if (secretDir) rmSync(secretDir, { recursive: true, force: true });
    });

    it('hands a warm VM from the pool to a new sandbox, and the pool shows it', { timeout: 2 * BOOT_MS }, async () => {
      const before = await poolReady(rt, 1);
      expect(before['vm.pool.size']).toBe('1');
      expect(JSON.parse(before['vm.pool']!).agents[agent]).toMatchObject({ target: 1, ready: 1 });
      const reply = await ok('SandboxCreate', {}, { sandbox: { id: sid, agent, backend: 'vm', hostname: 'in-a-vm', monitor }, start: true });
      expect(reply.sandbox).toMatchObject({ state: 'running', backend: 'vm', vm: { warm: true, machine: 'microvm' } });
      expect(['kvm', 'tcg']).toContain(reply.sandbox!.vm!.accel);
      firstPid = reply.sandbox!.vm!.pid ?? 0;
      expect(alive(firstPid)).toBe(true);
      const after = await hostMetadata(rt);
      expect(after['vm.pool.taken']).toBe('1');
      // `virtactors hosts` shows the pool too.
      // (asynchronously: the host answering discovery runs in this process)
      const { stdout: hosts } = await promisify(execFile)(process.execPath, ['dist/bin/virtactors.js', '--server', rt.server.url, '--creds', rt.server.auth!.operator, 'hosts'], { encoding: 'utf8', env: { ...process.env, NATS_URL: '', NATS_CREDS: '' } });
      expect(hosts).toMatch(/VM POOL/);
      expect(hosts.split('\n').find((l) => l.startsWith(rt.host.host.host))).toMatch(/[01]\/1 ready/);
      // The pool refills in the background, once the sandbox is set up in the VM it took:
      // soon a VM is booting (or, on a fast host, ready).
      const refilling = await refillStarted(rt);
      expect(Number(refilling['vm.pool.booting']) + Number(refilling['vm.pool.ready'])).toBe(1);
    });

    it('runs a container: its output, its exit status, a kernel of its own and the sandbox hostname', { timeout: BOOT_MS }, async () => {
      const r = await run('c1', ['sh', '-c', 'uname -r; hostname; echo oops >&2; exit 3']);
      expect(r.exitStatus).toBe(3);
      const [kernel, hostname] = r.stdout.trim().split('\n');
      expect(kernel).toMatch(/^\d+\.\d+\./);
      expect(kernel).not.toBe(release());
      expect(hostname).toBe('in-a-vm');
      expect(r.stderr).toBe('oops\n');
    });

    it("keeps the host's date, on a steady clock (the RTC at boot, the TSC or kvm-clock, not jiffies)", { timeout: BOOT_MS }, async () => {
      const r = await run('clock', ['sh', '-c', 'date +%s; cat /sys/devices/system/clocksource/clocksource0/current_clocksource']);
      expect(r.exitStatus).toBe(0);
      const [seconds, clock] = r.stdout.trim().split('\n');
      expect(Math.abs(Number(seconds) - Date.now() / 1000)).toBeLessThan(120);
      expect(['tsc', 'kvm-clock']).toContain(clock);
    });

    it('gives a process a terminal of the size asked for (the image has script and stty)', { timeout: BOOT_MS }, async () => {
      const r = await run('tty', ['sh', '-c', '[ -t 0 ] && stty size'], { terminal: true, consoleSize: { rows: 27, cols: 111 } });
      expect(r).toMatchObject({ exitStatus: 0, stdout: '27 111\r\n' });
    });

    it('cannot read a host file that was not shared', { timeout: BOOT_MS }, async () => {
      const path = join(secretDir, 'secret.txt');
      const r = await run('peek', ['sh', '-c', `cat ${path}; ls ${secretDir}`]);
      expect(r.exitStatus).not.toBe(0);
      expect(r.stdout).not.toContain('host only');
      expect(r.stderr).toMatch(/No such file or directory/);
    });

    it('runs a container in its rootfs, which reaches the VM over 9p', { timeout: BOOT_MS }, async () => {
      const r = await run('rooted', ['/bin/sh', '-c', 'cat /marker; ls /'], { rootfs });
      expect(r.exitStatus).toBe(0);
      expect(r.stdout.split('\n')[0]).toBe('inside the staged rootfs');
      // The rootfs's own entries, and the mount points of the OCI runtime's standard mounts.
      expect(r.stdout.split('\n').slice(1).filter(Boolean).sort()).toEqual(['bin', 'dev', 'marker', 'proc', 'sys']);
      // Staged by a bind mount into the VM's shared directory, and unstaged on delete.
      expect(mountsUnder(join(rt.host.runRoot, '.vm')).length).toBeGreaterThan(0);
      await ok('ContainerDelete', { sid, cid: 'rooted' }, { force: true });
      expect(mountsUnder(join(rt.host.runRoot, '.vm'))).toEqual([]);
      expect(existsSync(join(rootfs, 'marker'))).toBe(true);
    });

    it('execs in a running container and kills it', { timeout: BOOT_MS }, async () => {
      await ok('ContainerCreate', { sid }, { container: { id: 'box', args: ['sleep', '300'] } });
      await ok('ContainerStart', { sid, cid: 'box' });
      const exec = await ok('ContainerExec', { sid, cid: 'box' }, { execId: 'e1', args: ['sh', '-c', 'echo from-exec; exit 7'] });
      expect(exec.execId).toBe('e1');
      expect(await ok('ContainerWait', { sid, cid: 'box' }, { execId: 'e1', timeoutMs: 60_000 })).toMatchObject({ exitStatus: 7 });
      expect((await ok('ContainerLogs', { sid, cid: 'box' }, { execId: 'e1' })).stdout).toBe('from-exec\n');
      await ok('ContainerKill', { sid, cid: 'box' }, { signal: 15 });
      expect(await ok('ContainerWait', { sid, cid: 'box' }, { timeoutMs: 60_000 })).toMatchObject({ exitStatus: 143 });
      const events = (await rt.eventsOf(sid)).filter((e) => e.containerId === 'box').map((e) => `${e.type}${e.execId ? `:${e.execId}` : ''}`);
      expect(events).toEqual(['create', 'start', 'exec-added:e1', 'exec-started:e1', 'exit:e1', 'exit']);
    });

    it("reports the VM sandbox's memory: its qemu's resident set", { timeout: BOOT_MS }, async () => {
      const pid = (await status()).vm!.pid!;
      const qemuRss = () => Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
      const before = qemuRss();
      const reported = sample(await scrape(rt), 'virtactors_guest_memory_bytes', { sandbox: sid, backend: 'vm', measure: 'qemu-rss' }, rt.host.host.host);
      const after = qemuRss();
      // A booted guest (kernel, Node agent, the containers run so far) holds tens of MiB.
      expect(reported).toBeGreaterThan(32 * 1024 ** 2);
      // What the host reads of qemu at that moment, give or take what it touched meanwhile.
      expect(reported).toBeGreaterThanOrEqual(Math.min(before, after) * 0.9);
      expect(reported).toBeLessThanOrEqual(Math.max(before, after) * 1.1);
    });

    more?.({ rt, ok, sid });

    it('stops: the VM is gone, no qemu, socket or VM directory of it is left', { timeout: BOOT_MS }, async () => {
      const stopped = await ok('SandboxStop', { sid });
      expect(stopped.sandbox?.state).toBe('stopped');
      expect(alive(firstPid)).toBe(false);
      const runDir = join(rt.host.runRoot, sid);
      expect(readdirSync(runDir).filter((f) => f.endsWith('.sock'))).toEqual([]);
      expect(qemuProcessesUnder(rt.host.runRoot).filter((p) => p === firstPid)).toEqual([]);
      // Only the pool's own VM (booting or ready) is left under the VM root.
      expect(vmDirs().length).toBeLessThanOrEqual(1);
    });

    it('starts again in a VM; qemu killed makes the sandbox failed with the guest exit as reason', { timeout: 2 * BOOT_MS }, async () => {
      await poolReady(rt, 1);
      const started = await ok('SandboxStart', { sid });
      expect(started.sandbox).toMatchObject({ state: 'running', vm: { warm: true } });
      const pid = started.sandbox!.vm!.pid ?? 0;
      expect(pid).not.toBe(firstPid);
      await ok('ContainerCreate', { sid }, { container: { id: 'long', args: ['sleep', '300'] } });
      await ok('ContainerStart', { sid, cid: 'long' });
      process.kill(pid, 'SIGKILL');
      for (let s = await status(); s.state !== 'failed'; s = await status()) await new Promise((r) => setTimeout(r, 50));
      const failed = await status();
      expect(failed).toMatchObject({ state: 'failed', failureReason: 'guest-exited' });
      expect(failed.failureMessage).toMatch(/SIGKILL/);
      const events = await rt.eventsOf(sid);
      expect(events.filter((e) => e.type === 'fail')).toHaveLength(1);
      expect(events.find((e) => e.type === 'exit' && e.containerId === 'long')?.exitStatus).toBe(255);
    });

    it('deletes: nothing of the sandbox is left on the host', { timeout: BOOT_MS }, async () => {
      await ok('SandboxDelete', { sid }, { force: true });
      expect(existsSync(join(rt.host.runRoot, sid))).toBe(false);
      expect(mountsUnder(rt.host.runRoot)).toEqual([]);
      // What is left is the pool's next VM, booting or idle, which no sandbox has.
      for (const id of vmDirs()) expect(existsSync(join(rt.host.runRoot, '.vm', id, 'sandbox'))).toBe(false);
      expect(qemuProcessesUnder(rt.host.runRoot).length).toBeLessThanOrEqual(1);
    });

    it('the host stops its pool: no qemu of it is left', { timeout: BOOT_MS }, async () => {
      await rt.host.host.vm.close();
      expect(qemuProcessesUnder(rt.host.runRoot)).toEqual([]);
      expect(vmDirs()).toEqual([]);
    });
  });
}
