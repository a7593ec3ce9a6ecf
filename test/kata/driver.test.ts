// The kata driver against the real guest agent, which the test starts from the driver's
// own GuestPlan (as a backend would): exits and output come back through the listener,
// stop escalates from SIGTERM to SIGKILL, and guest errors keep their codes. Every case
// runs against our guest's own mode and against its stock mode (--stock), which behaves
// as the stock kata agent 1.x does (reference §10).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, VcError } from '../../bus/errors.js';
import { createAgent } from '../../actors/agents/index.js';
import { decodeAgentConfig } from '../../actors/agents/agent-type.js';
import { KataAgent } from '../../actors/agents/kata.js';
import type { AgentListener, ExitInfo } from '../../actors/agents/agent.js';
import type { ContainerSpec, SandboxSpec } from '../../machines/specs.js';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { eventually } from './helpers.js';
import { busyboxApplets, busyboxRootfs } from '../helpers/rootfs.js';
import { CONTAINER_NAMESPACES, ociSpec, STANDARD_MOUNTS } from '../../actors/agents/kata-spec.js';
import { newProcessRoot } from '../../actors/agents/kata-pids.js';
import { fromGrpcError } from '../../actors/agents/grpc-status.js';
import { Metadata, status } from '@grpc/grpc-js';

const MODES = [
  { mode: 'own', flags: [] as string[] },
  { mode: 'stock', flags: ['--stock'] },
] as const;

const sandboxSpec = (id: string): SandboxSpec => ({
  id,
  agent: 'kata',
  agentConfig: {},
  backend: 'process',
  hostname: `host-${id}`,
  monitor: { intervalMs: 0, deadlineMs: 0, policy: 'keep' },
  annotations: {},
  containers: [],
});

const container = (id: string, args: string[], extra: Partial<ContainerSpec> = {}): ContainerSpec => ({
  id,
  args,
  env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'],
  cwd: '/',
  user: '',
  terminal: false,
  rootfs: '',
  annotations: {},
  ...extra,
});

class Recorder implements AgentListener {
  readonly exits = new Map<string, ExitInfo>();
  readonly out = new Map<string, string>();
  /** What had been received of a process's output when its exit was reported. */
  readonly outAtExit = new Map<string, string>();

  processExited(cid: string, execId: string, exit: ExitInfo): void {
    const k = `${cid}/${execId}`;
    expect(this.exits.has(k)).toBe(false); // reported once
    this.exits.set(k, exit);
    this.outAtExit.set(k, `${this.out.get(`${k}/stdout`) ?? ''}|${this.out.get(`${k}/stderr`) ?? ''}`);
  }

  output(cid: string, execId: string, stream: 'stdout' | 'stderr', data: Uint8Array): void {
    const k = `${cid}/${execId}/${stream}`;
    this.out.set(k, (this.out.get(k) ?? '') + Buffer.from(data).toString());
  }

  async exit(cid: string, execId = cid): Promise<ExitInfo> {
    expect(await eventually(() => this.exits.has(`${cid}/${execId}`), 1000)).toBe(true);
    return this.exits.get(`${cid}/${execId}`)!;
  }
}

async function failure(promise: Promise<unknown>): Promise<VcError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(VcError);
    return err as VcError;
  }
  throw new Error('expected a failure');
}

it('is registered as the kata agent type', async () => {
  expect(createAgent('kata')).toBeInstanceOf(KataAgent);
});

it('sends a complete OCI spec: Linux with Resources and namespaces, the standard mounts, the root the container names', () => {
  const { spec } = ociSpec(container('c', ['true']), 'h');
  expect(spec.Linux?.Resources).toEqual({});
  expect(spec.Linux?.Namespaces?.map((n) => n.Type)).toEqual(['mount', 'ipc', 'uts', 'pid']);
  expect(CONTAINER_NAMESPACES).not.toContain('network');
  expect(spec.Mounts?.map((m) => m.destination)).toEqual(expect.arrayContaining(['/proc', '/dev', '/sys', '/sys/fs/cgroup']));
  expect(spec.Mounts).toEqual(STANDARD_MOUNTS);
  // None named: our guest gives it a minimal root of its own; a stock agent refuses it.
  expect(spec.Root).toEqual({ Path: '', Readonly: false });
  expect(ociSpec(container('c', ['true'], { rootfs: '/srv/r' }), 'h').spec.Root?.Path).toBe('/srv/r');
});

it('finds the one new process tree root in a ps table with parent links', () => {
  const table = '  PID  PPID\n   10     1\n   11    10\n   20     1\n   21    20\n   22    21\n';
  expect(newProcessRoot(table, new Set([10, 11]))).toBe(20);
  expect(newProcessRoot(table, new Set())).toBeUndefined(); // two roots: 10 and 20
  expect(newProcessRoot('  PID\n   20\n', new Set())).toBeUndefined(); // no PPID column
});

it('maps a method the agent does not serve (UNIMPLEMENTED) to Unimplemented', () => {
  const err = fromGrpcError(Object.assign(new Error('x'), { code: status.UNIMPLEMENTED, details: 'unknown method AddInterface', metadata: new Metadata() }), 'AddInterface');
  expect([err.code, err.message]).toEqual([ErrorCode.Unimplemented, 'AddInterface: unknown method AddInterface']);
});

it("maps a full disk to ResourceExhausted: our guest's RESOURCE_EXHAUSTED, and a stock agent's UNKNOWN with the kernel's words", () => {
  const grpcError = (code: status, details: string) => Object.assign(new Error(details), { code, details, metadata: new Metadata() });
  const ours = fromGrpcError(grpcError(status.RESOURCE_EXHAUSTED, 'cannot exec in container c: ENOSPC: no space left on device, write'), 'ExecProcess');
  const stock = fromGrpcError(grpcError(status.UNKNOWN, 'write /run/x: no space left on device'), 'CreateContainer');
  const other = fromGrpcError(grpcError(status.UNKNOWN, 'container not running or created: stopped'), 'StartContainer');
  expect([ours.code, stock.code, other.code]).toEqual([ErrorCode.ResourceExhausted, ErrorCode.ResourceExhausted, ErrorCode.Internal]);
});

for (const { mode, flags } of MODES) for (const longLiveConn of [false, true]) {
  describe(`kata driver, ${mode} guest (${longLiveConn ? 'long-lived connection' : 'a connection per call'})`, () => {
    const stock = mode === 'stock';
    /** SIGTERM to an init without a handler: the stock agent sends SIGKILL instead. */
    const termStatus = stock ? 137 : 143;
    // The stock agent has no default root filesystem: its containers name one (ours get a
    // minimal one of the guest's when they name none).
    let stockRootfs = '';
    const made = (id: string, args: string[], extra: Partial<ContainerSpec> = {}) => container(id, args, { ...(stock ? { rootfs: stockRootfs } : {}), ...extra });
    let runDir: string;
    let guest: ChildProcess;
    let guestExit: Promise<number | null>;
    const rec = new Recorder();
    const driver = new KataAgent({ stopGraceMs: 200 });
    const logLines: string[] = [];

    beforeAll(async () => {
      runDir = mkdtempSync(join(tmpdir(), 'kata-drv-'));
      if (stock) stockRootfs = busyboxRootfs('', busyboxApplets());
      const config = decodeAgentConfig('kata', { longLiveConn, callTimeoutMs: 5000 });
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          logLines.push(chunk.toString());
          done();
        },
      });
      await driver.init({ sandbox: sandboxSpec(`drv-${longLiveConn}`), config, runDir, listener: rec, log: pino({ level: 'debug' }, sink) });
    });

    afterAll(async () => {
      if (guest && guest.exitCode === null && guest.signalCode === null) {
        guest.kill('SIGKILL');
        await guestExit;
      }
      rmSync(runDir, { recursive: true, force: true });
    });

    it('plans the guest, waits for it to listen and creates the sandbox', async () => {
      const plan = await driver.createSandbox();
      const address = `unix://${runDir}/kata.sock`;
      expect(plan.endpoint).toEqual({ grpcAddress: address });
      expect(plan.command[0]).toBe(process.execPath);
      expect(plan.command[1]).toMatch(/dist\/guest\/kata-agent\/main\.js$/);
      expect(plan.command.slice(2)).toEqual(['--listen', address, '--state-parent', runDir]);
      expect(plan.env.NODE_EXTRA_CA_CERTS).toBeUndefined();
      // Started and not waited for: startSandbox retries the dial until the guest listens.
      guest = spawn(plan.command[0]!, [...plan.command.slice(1), ...flags], { env: plan.env, stdio: 'ignore' });
      guestExit = new Promise((resolve) => guest.once('exit', (code) => resolve(code)));
      await driver.startSandbox(plan.endpoint);
      await driver.connect();
      await driver.check(AbortSignal.timeout(1000));
      expect(driver.capabilities()).toBe(1);
    });

    it('reports output, then the exit, of a container', async () => {
      await driver.createContainer(made('c1', ['sh', '-c', 'echo hi; echo err >&2; exit 5']));
      await driver.startContainer('c1');
      expect((await rec.exit('c1')).exitStatus).toBe(5);
      expect(rec.outAtExit.get('c1/c1')).toBe('hi\n|err\n');
      // The stock agent's EOF error ends the streams like empty data: not a failed pump.
      expect(logLines.filter((l) => l.includes('output pump ended'))).toEqual([]);
      expect((await driver.waitProcess('c1', 'c1')).exitStatus).toBe(5);
      expect(await driver.stopContainer('c1')).toMatchObject({ exitStatus: 5 });
    });

    it('execs, lists processes, reports stats, pauses and resumes', async () => {
      await driver.createContainer(made('c2', ['sleep', '60']));
      const started = await driver.startContainer('c2');
      const { pid } = started;
      // Our guest says the pid; for the stock agent the driver reads it from ListProcesses.
      expect(started.pidUnknown).toBeUndefined();
      expect(pid).toBeGreaterThan(0);
      const side = await driver.exec('c2', { args: ['sh', '-c', 'sleep 1 & sleep 1.2; :'], env: [], cwd: '/', user: '', terminal: false }, 'side');
      expect(side.pidUnknown).toBeUndefined();
      expect(side.pid).toBeGreaterThan(0);
      // The exec's shell, not one of the sleeps it forked (its wrapper may take a moment to exec it).
      const cmdline = () => {
        try {
          return readFileSync(`/proc/${side.pid}/cmdline`, 'utf8');
        } catch {
          return ''; // gone: the check below fails
        }
      };
      // (The container's shell: its rootfs's sh, by whatever path that rootfs has it.)
      expect(await eventually(() => /(^|\/)sh\0-c\0sleep 1 & sleep 1\.2; :\0$/.test(cmdline()))).toBe(true);
      expect((await rec.exit('c2', 'side')).exitStatus).toBe(0);
      const exec = await driver.exec('c2', { args: ['sh', '-c', 'echo from-exec; exit 7'], env: [], cwd: '/', user: '', terminal: false }, 'e1');
      expect(exec.execId).toBe('e1');
      expect((await rec.exit('c2', 'e1')).exitStatus).toBe(7);
      expect(rec.outAtExit.get('c2/e1')).toBe('from-exec\n|');
      const json = async () => JSON.parse(Buffer.from(await driver.processListContainer('c2', { format: 'json', args: [] })).toString()) as number[];
      for (let i = 0; i < 200 && (await json()).length > 1; i++) await new Promise((r) => setTimeout(r, 10)); // the side's orphaned sleep
      expect(await json()).toEqual([pid]);
      const table = Buffer.from(await driver.processListContainer('c2', { format: 'table', args: ['-ef'] })).toString().trim().split('\n');
      expect(table).toHaveLength(2);
      expect(table[1]).toContain('sleep 60');
      const stats = await driver.statsContainer('c2');
      // The container's init (tini, as PID 1 of its pid namespace) and sleep.
      expect(stats.pidsCurrent).toBe(2);
      expect(stats.cpuUsageNs).toBeGreaterThan(0);
      expect(stats.memoryUsageBytes).toBeGreaterThan(0);
      await driver.updateContainer('c2', { Pids: { Limit: 20 } });
      expect((await driver.statsContainer('c2')).pidsLimit).toBe(20);
      await driver.pauseContainer('c2');
      expect((await failure(driver.pauseContainer('c2'))).code).toBe(ErrorCode.FailedPrecondition);
      await driver.resumeContainer('c2');
      await driver.killContainer('c2', 15, false);
      expect((await rec.exit('c2')).exitStatus).toBe(termStatus);
      expect(await driver.stopContainer('c2')).toMatchObject({ exitStatus: termStatus });
    });

    it('stops with SIGTERM, escalates to SIGKILL, and starts a stopped container again', async () => {
      await driver.createContainer(made('polite', ['sleep', '60']));
      await driver.startContainer('polite');
      expect(await driver.stopContainer('polite')).toMatchObject({ exitStatus: 143 });
      expect((await rec.exit('polite')).exitStatus).toBe(143);

      await driver.createContainer(made('stubborn', ['sh', '-c', 'trap "" TERM; echo armed; while :; do sleep 0.05; done']));
      await driver.startContainer('stubborn');
      // SIGTERM only after the shell ignores it: before the trap it would end the shell.
      expect(await eventually(() => (rec.out.get('stubborn/stubborn/stdout') ?? '').includes('armed'), 500)).toBe(true);
      expect(await driver.stopContainer('stubborn')).toMatchObject({ exitStatus: 137 });

      rec.exits.delete('polite/polite');
      await driver.startContainer('polite');
      await driver.signalProcess('polite', 'polite', 9, false);
      expect((await rec.exit('polite')).exitStatus).toBe(137);
      await driver.stopContainer('polite');
    });

    it('relays stdin and refuses a resize without a terminal', async () => {
      await driver.createContainer(made('cat', ['cat']));
      await driver.startContainer('cat');
      expect(await driver.writeProcessStdin('cat', 'cat', Buffer.from('echoed\n'))).toBe(7);
      expect((await failure(driver.winsizeProcess('cat', 'cat', 24, 80))).code).toBe(ErrorCode.FailedPrecondition);
      await driver.closeProcessStdin('cat', 'cat');
      expect((await rec.exit('cat')).exitStatus).toBe(0);
      expect(rec.outAtExit.get('cat/cat')).toBe('echoed\n|');
      await driver.stopContainer('cat');
    });

    it('maps guest errors to our codes, keeping the guest message', async () => {
      const missing = await failure(driver.startContainer('nope'));
      expect(missing.code).toBe(ErrorCode.NotFound);
      expect(missing.message).toMatch(/container nope does not exist/);
      await driver.createContainer(made('dup', ['true']));
      expect((await failure(driver.createContainer(made('dup', ['true'])))).code).toBe(ErrorCode.AlreadyExists);
      expect((await failure(driver.exec('dup', { args: ['true'], env: [], cwd: '/', user: '', terminal: false }, 'x'))).code).toBe(ErrorCode.FailedPrecondition);
      expect((await failure(driver.createContainer(made('bad', ['no-such-program'])))).code).toBe(ErrorCode.InvalidArgument);
      expect((await failure(driver.startSandbox({}))).code).toBe(ErrorCode.AlreadyExists);
      await driver.stopContainer('dup');
    });

    it('destroys the sandbox, and the guest exits cleanly on SIGTERM', async () => {
      await driver.createContainer(made('left', ['sleep', '60']));
      await driver.startContainer('left');
      await driver.stopSandbox();
      await driver.disconnect();
      guest.kill('SIGTERM');
      expect(await guestExit).toBe(0);
    });
  });
}

describe('kata driver against a guest that is not there or does not answer', () => {
  let runDir: string;
  let guest: ChildProcess | undefined;
  beforeAll(() => {
    runDir = mkdtempSync(join(tmpdir(), 'kata-drv-'));
  });
  afterAll(async () => {
    if (guest && guest.exitCode === null) {
      guest.kill('SIGCONT');
      guest.kill('SIGKILL');
      await new Promise((r) => guest!.once('exit', r));
    }
    rmSync(runDir, { recursive: true, force: true });
  });

  it('gives up dialing after the dial timeout with Unavailable', async () => {
    const driver = new KataAgent();
    await driver.init({ sandbox: sandboxSpec('absent'), config: decodeAgentConfig('kata', { dialTimeoutMs: 200 }), runDir, listener: new Recorder() });
    const err = await failure(driver.startSandbox({}));
    expect(err.code).toBe(ErrorCode.Unavailable);
    expect(err.message).toMatch(/within 200 ms/);
  });

  it('fails a check with DeadlineExceeded while the guest is stopped', async () => {
    const driver = new KataAgent();
    await driver.init({ sandbox: sandboxSpec('frozen'), config: decodeAgentConfig('kata', { longLiveConn: true }), runDir, listener: new Recorder() });
    const plan = await driver.createSandbox();
    guest = spawn(plan.command[0]!, plan.command.slice(1), { env: plan.env, stdio: 'ignore' });
    await driver.startSandbox(plan.endpoint);
    await driver.check(AbortSignal.timeout(1000));
    guest.kill('SIGSTOP');
    try {
      expect((await failure(driver.check(AbortSignal.timeout(300)))).code).toBe(ErrorCode.DeadlineExceeded);
    } finally {
      guest.kill('SIGCONT');
    }
    await driver.check(AbortSignal.timeout(2000));
    await driver.stopSandbox();
    await driver.disconnect();
    guest.kill('SIGTERM');
    expect(await new Promise((r) => guest!.once('exit', r))).toBe(0);
  });
});
