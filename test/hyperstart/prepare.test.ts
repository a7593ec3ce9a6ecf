// PREPARECONTAINER: our guest creates a container (bundle, crun create, init held at the
// start gate) at the bus's ContainerCreate, so that NEWCONTAINER only opens the gate. These
// cases look at the guest's own crun state (its --root, in the guest's state directory)
// and at the cgroups and processes it made: a prepared container exists there before its
// start, and nothing of it is left once it is deleted, stopped, or its sandbox stops. A stock
// hyperstart has no such command: there the container appears at the start only.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { VcError } from '../../bus/errors.js';
import { Code } from '../../protos/hyperstart/codes.js';
import { CtlDecoder, decodeJson, decodeText, encodeCtl, encodeJson, TtyDecoder, type CtlFrame, type TtyFrame } from '../../protos/hyperstart/frame.js';
import { adoptingDriver, containerSpec, Raw, setupDriver, startGuest, type DriverSetup, type GuestProcess } from './harness.js';

let setup: DriverSetup | undefined;
let guest: GuestProcess | undefined;

afterEach(async () => {
  await guest?.kill();
  await setup?.cleanup();
  guest = undefined;
  setup = undefined;
});

async function boot(flags: string[] = []): Promise<{ setup: DriverSetup; guest: GuestProcess }> {
  setup = await setupDriver({ callTimeoutMs: 10_000 }, { stopGraceMs: 2_000 });
  guest = await startGuest(setup.agent, flags);
  await setup.agent.startSandbox({});
  return { setup, guest };
}

/** The guest's state directory (bundles, crun's --root), made inside the run directory. */
function stateDir(dir: string): string {
  const found = readdirSync(dir).filter((e) => e.startsWith('guest-'));
  expect(found).toHaveLength(1);
  return join(dir, found[0]!);
}

interface CrunState {
  status: string;
  pid: number;
}

/** `crun state` in the guest's crun root; undefined when crun has no such container. */
function crunState(dir: string, id: string): CrunState | undefined {
  try {
    return JSON.parse(execFileSync('crun', [`--root=${join(stateDir(dir), 'runtime')}`, 'state', id], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as CrunState;
  } catch {
    return undefined;
  }
}

const crunIds = (dir: string): string[] => {
  const root = join(stateDir(dir), 'runtime');
  return existsSync(root) ? readdirSync(root) : [];
};
const bundleIds = (dir: string): string[] => {
  const bundles = join(stateDir(dir), 'bundles');
  return existsSync(bundles) ? readdirSync(bundles) : [];
};

/** The cgroup directories of a process that are the container's own (named by its id). */
function containerCgroups(pid: number, id: string): string[] {
  return readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [, controllers, path] = line.split(':');
      const mount = controllers === '' ? '/sys/fs/cgroup/unified' : `/sys/fs/cgroup/${controllers!.replace(/^name=/, '')}`;
      return { dir: join(existsSync(mount) ? mount : '/sys/fs/cgroup', path!), path: path! };
    })
    .filter((c) => c.path.split('/').at(-1) === id)
    .map((c) => c.dir);
}

const alive = (pid: number) => {
  try {
    return !/^[^)]*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

/** The argv of a process. */
const argv = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
const ppid = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1]);

/**
 * The start ran the program in the container crun made at create: the started pid is the
 * program (here already exec'd into sleep), a child of crun's init (the gate, which left it).
 */
function ranInPrepared(pid: number, init: number): void {
  expect(argv(pid).slice(0, 2).map((a, i) => (i === 0 ? a.split('/').pop() : a))).toEqual(['sleep', '100']);
  expect(ppid(pid)).toBe(init);
  expect(argv(init)).not.toContain('va-gate');
}

/**
 * What a prepared container holds in the guest: crun's record, its bundle, its init, its
 * cgroups. crun runs the container (the supervisor's OCI create is `crun run` of a gate):
 * crun says running, and its init is the gate shell waiting for its start line, not the
 * program yet.
 */
function held(dir: string, id: string): { state: CrunState; cgroups: string[] } {
  const state = crunState(dir, id);
  expect(state?.status).toBe('running');
  expect(bundleIds(dir)).toContain(id);
  expect(alive(state!.pid)).toBe(true);
  expect(argv(state!.pid)).toContain('va-gate');
  const cgroups = containerCgroups(state!.pid, id);
  expect(cgroups.length).toBeGreaterThan(0);
  for (const c of cgroups) expect(existsSync(c)).toBe(true);
  return { state: state!, cgroups };
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 10));
}

function expectGone(dir: string, id: string, was: { state: CrunState; cgroups: string[] }): void {
  expect(crunState(dir, id)).toBeUndefined();
  expect(crunIds(dir)).not.toContain(id);
  expect(bundleIds(dir)).not.toContain(id);
  expect(alive(was.state.pid)).toBe(false);
  for (const c of was.cgroups) expect(existsSync(c)).toBe(false);
}

describe('hyperstart: containers prepared at create (our guest)', () => {
  it('has crun create the container at createContainer, its init held; the start runs it', async () => {
    const { setup } = await boot();
    await setup.agent.createContainer(containerSpec('c1', ['sh', '-c', 'echo hello; exec sleep 100']));
    const { state } = held(setup.dir, 'c1');
    // Held at the gate: the program has not run (no output, no exit).
    await new Promise((r) => setTimeout(r, 100));
    expect(setup.text('c1', 'c1')).toBe('');
    expect(setup.rec.exits).toEqual([]);
    const started = await setup.agent.startContainer('c1');
    await until(() => setup.text('c1', 'c1') === 'hello\n');
    ranInPrepared(started.pid, state.pid);
    expect((await setup.agent.stopContainer('c1'))?.exitStatus).toBe(143);
  });

  it('reports the errors of the create at createContainer, with their codes, and leaves nothing', async () => {
    const { setup } = await boot();
    const cases: Array<[string, Parameters<typeof containerSpec>[2] & { args?: string[] }, string, RegExp]> = [
      ['no-program', { args: ['/nonexistent/binary'] }, 'InvalidArgument', /\/nonexistent\/binary: no such executable file/],
      ['no-user', { user: 'nosuchuser' }, 'InvalidArgument', /nosuchuser/],
      ['no-cwd', { cwd: '/nonexistent-dir' }, 'InvalidArgument', /nonexistent-dir/],
    ];
    for (const [id, extra, code, message] of cases) {
      const { args = ['true'], ...rest } = extra;
      const err = await setup.agent.createContainer(containerSpec(id, args, rest)).catch((e: unknown) => e);
      expect(err, id).toBeInstanceOf(VcError);
      expect({ id, code: (err as VcError).code }).toEqual({ id, code });
      expect((err as VcError).message).toMatch(/refused PREPARECONTAINER/);
      expect((err as VcError).message).toMatch(message);
      expect(crunIds(setup.dir)).toEqual([]);
      expect(bundleIds(setup.dir)).toEqual([]);
      // Never created: nothing to start.
      await expect(setup.agent.startContainer(id)).rejects.toThrow(/unknown to the hyperstart agent/);
    }
  });

  it('refuses a rootfs without the program at createContainer, and unstages it', async () => {
    const { setup } = await boot();
    const err = await setup.agent.createContainer(containerSpec('c1', ['/bin/sh'], { rootfs: setup.dir })).catch((e: unknown) => e);
    expect((err as VcError).code).toBe('InvalidArgument');
    expect((err as VcError).message).toMatch(/refused PREPARECONTAINER: \/bin\/sh: no such executable file/);
    expect(existsSync(join(setup.dir, 'shared', 'c1'))).toBe(false);
    expect(crunIds(setup.dir)).toEqual([]);
  });

  it('removes a container deleted before it started: no crun container, bundle, cgroup or process left', async () => {
    const { setup } = await boot();
    await setup.agent.createContainer(containerSpec('c1', ['sleep', '100']));
    const was = held(setup.dir, 'c1');
    await setup.agent.releaseContainer('c1');
    expectGone(setup.dir, 'c1', was);
    // The id is free in the guest again.
    await setup.agent.createContainer(containerSpec('c1', ['true']));
    held(setup.dir, 'c1');
  });

  it('removes a container stopped before it started; starting it later creates it anew', async () => {
    const { setup } = await boot();
    await setup.agent.createContainer(containerSpec('c1', ['sh', '-c', 'echo again']));
    const was = held(setup.dir, 'c1');
    expect(await setup.agent.stopContainer('c1')).toBeUndefined();
    expectGone(setup.dir, 'c1', was);
    await setup.agent.startContainer('c1');
    expect((await setup.exited('c1', 'c1')).exitStatus).toBe(0);
    expect(setup.text('c1', 'c1')).toBe('again\n');
  });

  it('ends a prepared container with its sandbox (DESTROYPOD): no process or cgroup left', async () => {
    const { setup, guest } = await boot();
    await setup.agent.createContainer(containerSpec('c1', ['sleep', '100']));
    const was = held(setup.dir, 'c1');
    await setup.agent.stopSandbox();
    expect((await guest.exit).code).toBe(0);
    expect(alive(was.state.pid)).toBe(false);
    for (const c of was.cgroups) expect(existsSync(c)).toBe(false);
    // The guest's state directory (bundles, crun's root) went with it.
    expect(readdirSync(setup.dir).filter((e) => e.startsWith('guest-'))).toEqual([]);
  });

  it('starts a container prepared by an earlier driver (a runtime that restarted in between)', async () => {
    const { setup } = await boot();
    const spec = containerSpec('c1', ['sh', '-c', 'echo after restart; exec sleep 100']);
    await setup.agent.createContainer(spec);
    const { state } = held(setup.dir, 'c1');
    // The first driver goes away, as a killed runtime's does; the guest keeps the container.
    await setup.agent.disconnect();
    const next = await adoptingDriver(setup.dir);
    try {
      next.agent.adopt({ endpoint: {}, containers: [{ spec, started: false, running: [] }] });
      await next.agent.reconcile();
      held(setup.dir, 'c1');
      const started = await next.agent.startContainer('c1');
      await until(() => next.text('c1') === 'after restart\n');
      ranInPrepared(started.pid, state.pid);
      expect((await next.agent.stopContainer('c1'))?.exitStatus).toBe(143);
      expect(next.exits.map((e) => e.exit.exitStatus)).toEqual([143]);
    } finally {
      await next.agent.disconnect();
    }
  });
});

describe('hyperstart: a stock guest still creates at the start', () => {
  it('has no container in crun after createContainer; NEWCONTAINER creates and starts it', async () => {
    const { setup } = await boot(['--stock']);
    await setup.agent.createContainer(containerSpec('c1', ['sleep', '100']));
    expect(crunState(setup.dir, 'c1')).toBeUndefined();
    expect(bundleIds(setup.dir)).toEqual([]);
    await setup.agent.startContainer('c1');
    expect(crunState(setup.dir, 'c1')?.status).toBe('running');
    // A program that is missing is refused at the start there (with no reason: stock).
    await setup.agent.createContainer(containerSpec('c2', ['/nonexistent/binary']));
    await expect(setup.agent.startContainer('c2')).rejects.toThrow(/refused NEWCONTAINER/);
  });
});

describe('hyperstart guest: PREPARECONTAINER on the wire', () => {
  const reply = (f: CtlFrame) => f.code === Code.ACK || f.code === Code.ERROR;

  it('acknowledges the same body twice, refuses another under the id, and starts only with the body it prepared', async () => {
    const { setup } = await boot();
    // Our own connection replaces the driver's.
    const ctl = await Raw.open(`${setup.dir}/hyper.sock`, new CtlDecoder());
    const tty = await Raw.open<TtyFrame>(`${setup.dir}/tty.sock`, new TtyDecoder());
    try {
      await ctl.next((f) => f.code === Code.READY);
      const call = async (code: number, body: unknown) => {
        ctl.socket.write(encodeCtl(code, encodeJson(body)));
        const f = await ctl.next(reply);
        return f.code === Code.ACK ? { ack: f.payload } : { error: decodeText(f.payload) };
      };
      const container = { id: 'w', image: '', rootfs: '', process: { id: 'w', args: ['sh', '-c', 'echo wire; exec sleep 100'] } };
      expect(await call(Code.PREPARECONTAINER, container)).toEqual({ ack: new Uint8Array() });
      expect(await call(Code.PREPARECONTAINER, container)).toEqual({ ack: new Uint8Array() });
      expect(await call(Code.PREPARECONTAINER, { ...container, process: { ...container.process, args: ['true'] } })).toEqual({
        error: 'AlreadyExists: container w is already prepared, from another body',
      });
      // Another body at the start: refused, and the prepared container stays.
      expect(await call(Code.NEWCONTAINER, { ...container, process: { ...container.process, args: ['true'], stdio: 11, stderr: 12 } })).toEqual({
        error: 'FailedPrecondition: container w was prepared from another body: start it with the same one, or remove it first',
      });
      const { state } = held(setup.dir, 'w');
      // The same body with the start's streams: it runs.
      const started = await call(Code.NEWCONTAINER, { ...container, process: { ...container.process, stdio: 11, stderr: 12 } });
      expect(Buffer.from((await tty.next((f) => f.seq === 11 && f.payload.byteLength > 0)).payload).toString()).toBe('wire\n');
      ranInPrepared(decodeJson<{ pid: number }>((started as { ack: Uint8Array }).ack).pid, state.pid);
      expect(await call(Code.KILLCONTAINER, { container: 'w', signal: 9 })).toEqual({ ack: new Uint8Array() });
      const event = await ctl.next((f) => f.code === Code.PROCESSASYNCEVENT);
      expect(decodeJson(event.payload)).toEqual({ container: 'w', process: 'w', event: 'finished', status: 137 });
      // Started: preparing it again is refused.
      expect((await call(Code.PREPARECONTAINER, container)).error).toBe('AlreadyExists: container w already exists');
    } finally {
      ctl.socket.destroy();
      tty.socket.destroy();
    }
  });

  /** EXTENSIONS, then a PREPARECONTAINER, on a raw connection to a guest booted with `flags`. */
  async function probe(flags: string[]): Promise<[CtlFrame, CtlFrame]> {
    const { setup } = await boot(flags);
    const ctl = await Raw.open(`${setup.dir}/hyper.sock`, new CtlDecoder());
    try {
      await ctl.next((f) => f.code === Code.READY);
      ctl.socket.write(encodeCtl(Code.EXTENSIONS));
      const ext = await ctl.next(reply);
      ctl.socket.write(encodeCtl(Code.PREPARECONTAINER, encodeJson({ id: 'x', rootfs: '', process: { args: ['true'] } })));
      return [ext, await ctl.next(reply)];
    } finally {
      ctl.socket.destroy();
    }
  }

  it('lists PREPARECONTAINER among the extensions it serves', async () => {
    const [ext, prep] = await probe([]);
    expect(decodeJson<number[]>(ext.payload)).toContain(Code.PREPARECONTAINER);
    expect(prep.code).toBe(Code.ACK);
    held(setup!.dir, 'x');
  });

  it('is refused by the stock guest, with an empty ERROR, as every extension code', async () => {
    const [ext, prep] = await probe(['--stock']);
    expect([ext.code, prep.code, prep.payload.byteLength]).toEqual([Code.ERROR, Code.ERROR, 0]);
    expect(crunState(setup!.dir, 'x')).toBeUndefined();
  });
});
