// The driver against the real built guest (dist/guest/hyperstart/main.js), started as a
// plain child process in a temp directory: real processes, real signals, real exits.
// Every case runs against our guest's own mode and against its stock mode (--stock),
// which behaves as upstream hyperstart does (reference §10): no pids in its replies,
// empty ERRORs, deaths by signal reported as 0 (the driver says unknown), no ps or pause.
import { copyFileSync, mkdirSync, readFileSync, realpathSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createConnection, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VcError } from '../../bus/errors.js';
import type { ExitInfo, StartResult } from '../../actors/agents/agent.js';
import { adoptingDriver, containerSpec, pidOf, setupDriver, startGuest, type DriverSetup, type GuestProcess } from './harness.js';

let setup: DriverSetup;
let guest: GuestProcess;

for (const mode of ['own', 'stock'] as const) {
  const stock = mode === 'stock';
  const flags = stock ? ['--stock'] : [];

  /**
   * What an exit by signal looks like: 128 + n from our guest; unknown from a stock one,
   * which reports it as 0 (the driver knows it signalled the process, so 0 is not trusted).
   */
  const bySignal = (status: number) => (stock ? { exitStatus: 255, unknown: true } : { exitStatus: status, unknown: false });
  const seen = (exit: ExitInfo | undefined) => ({ exitStatus: exit?.exitStatus, unknown: !!exit?.exitStatusUnknown });

  /** The pid of a started process: said by our guest; found in /proc for a stock one, which says none. */
  async function pidFor(started: StartResult, command: string): Promise<number> {
    if (!stock) {
      expect(started.pidUnknown).toBeUndefined();
      expect(started.pid).toBeGreaterThan(0);
      return started.pid;
    }
    expect({ pid: started.pid, pidUnknown: started.pidUnknown }).toEqual({ pid: 0, pidUnknown: true });
    return pidOf(guest.pid, command);
  }

  /**
   * The pid a listing shows for a host pid: the host's for our guest, which lists from the
   * guest's view; the innermost (the container's pid namespace) for a stock one, whose listing
   * is ps run in the container.
   */
  const listed = (hostPid: number): number => {
    if (!stock) return hostPid;
    const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${hostPid}/status`, 'utf8'))?.[1]?.trim().split(/\s+/) ?? [];
    return Number(nspid.at(-1));
  };

  describe(`hyperstart driver, ${mode} guest`, () => {
    beforeEach(async () => {
      setup = await setupDriver({ callTimeoutMs: 10_000 }, { stopGraceMs: 5_000 });
      guest = await startGuest(setup.agent, flags);
      await setup.agent.startSandbox({});
    });

    afterEach(async () => {
      await guest.kill();
      await setup.cleanup();
    });

    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };

    /** The one-letter state of a process from /proc (R, S, T, Z ...). */
    const procState = (pid: number) => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0];

    async function start(id: string, args: string[], extra: Parameters<typeof containerSpec>[2] = {}) {
      await setup.agent.createContainer(containerSpec(id, args, extra));
      return setup.agent.startContainer(id);
    }

    async function until(cond: () => boolean): Promise<void> {
      while (!cond()) await new Promise((r) => setTimeout(r, 10));
    }

    describe('hyperstart guest: containers', () => {
      it('runs a container: stdout, stderr and the exit status come back', async () => {
        const started = await start('c1', ['sh', '-c', 'echo hello; echo oops >&2; exit 3']);
        expect(started).toEqual(stock ? { pid: 0, pidUnknown: true } : { pid: expect.any(Number) });
        const exit = await setup.exited('c1', 'c1');
        expect(exit.exitStatus).toBe(3);
        expect(setup.text('c1', 'c1')).toBe('hello\n');
        expect(setup.text('c1', 'c1', 'stderr')).toBe('oops\n');
        expect(await setup.agent.waitProcess('c1', 'c1')).toEqual(exit);
        // A stock guest already freed the exited container: its refused REMOVECONTAINER is no failure.
        expect(await setup.agent.stopContainer('c1')).toEqual(exit);
      });

      it('passes exactly the given env, the cwd and the user', async () => {
        await start('c1', ['/bin/sh', '-c', 'echo "$FOO|$HOME"; pwd; id -u'], { env: ['FOO=bar=baz'], cwd: '/tmp', user: '65534' });
        expect((await setup.exited('c1', 'c1')).exitStatus).toBe(0);
        expect(setup.text('c1', 'c1')).toBe('bar=baz|\n/tmp\n65534\n');
        // Exactly: nothing added on the way (env itself adds nothing, unlike a shell).
        await start('c2', ['env'], { env: ['FOO=bar=baz', 'A=1'] });
        expect((await setup.exited('c2', 'c2')).exitStatus).toBe(0);
        expect(setup.text('c2', 'c2')).toBe('FOO=bar=baz\nA=1\n');
      });

      it('runs a container chrooted into its rootfs, in its cwd, as its user', async () => {
        const rootfs = minimalRootfs(join(setup.dir, 'rootfs'));
        await start('c1', ['/bin/sh', '-c', 'pwd; echo /*; (: > /work/probe) 2>/dev/null && echo root || echo not-root'], { rootfs, cwd: '/work', user: '65534:65534' });
        expect((await setup.exited('c1', 'c1')).exitStatus).toBe(0);
        // Its own files, and the mount points the OCI runtime makes for /dev, /proc and /sys.
        expect(setup.text('c1', 'c1')).toBe('/work\n/bin /dev /lib /lib64 /proc /sys /work\nnot-root\n');
      });

      it('delivers every byte of large output before the exit', async () => {
        await start('c1', ['sh', '-c', 'head -c 300000 /dev/zero | tr "\\0" x']);
        await setup.exited('c1', 'c1');
        expect(setup.text('c1', 'c1')).toBe('x'.repeat(300_000));
      });

      it('stops a sleeping container with SIGTERM: 143', async () => {
        const pid = await pidFor(await start('c1', ['sleep', '100']), 'sleep 100');
        const exit = await setup.agent.stopContainer('c1');
        expect(seen(exit)).toEqual(bySignal(143));
        expect(seen(await setup.exited('c1', 'c1'))).toEqual(bySignal(143));
        expect(alive(pid)).toBe(false);
      });

      it('escalates to SIGKILL when SIGTERM is ignored: 137', async () => {
        await setup.cleanup();
        await guest.kill();
        setup = await setupDriver({}, { stopGraceMs: 200 });
        guest = await startGuest(setup.agent, flags);
        await setup.agent.startSandbox({});
        await start('c1', ['sh', '-c', 'trap "" TERM; echo armed; while :; do sleep 1; done']);
        await until(() => setup.text('c1', 'c1') === 'armed\n');
        expect(seen(await setup.agent.stopContainer('c1'))).toEqual(bySignal(137));
      });

      it('starts a stopped container again, whether it exited on its own or was stopped', async () => {
        await start('c1', ['sh', '-c', 'echo run']);
        expect((await setup.exited('c1', 'c1')).exitStatus).toBe(0);
        setup.rec.exits.length = 0;
        await setup.agent.startContainer('c1'); // the guest still holds the exited one
        expect((await setup.exited('c1', 'c1')).exitStatus).toBe(0);
        expect(setup.text('c1', 'c1')).toBe('run\nrun\n');

        await start('c2', ['sleep', '100']);
        expect(seen(await setup.agent.stopContainer('c2'))).toEqual(bySignal(143));
        setup.rec.exits.length = 0;
        const again = await pidFor(await setup.agent.startContainer('c2'), 'sleep 100');
        expect(alive(again)).toBe(true);
        await expect(setup.agent.startContainer('c2')).rejects.toThrow(/already running/);
      });

      it('starts a stopped container again after a driver restart, whether the guest still holds it or not', async () => {
        // c1 exited on its own (ours keeps it until REMOVECONTAINER, a stock one freed it); c2 was stopped (removed).
        const c1Spec = containerSpec('c1', ['sh', '-c', 'echo one']);
        const c2Spec = containerSpec('c2', ['sleep', '100']);
        await start('c1', c1Spec.args);
        await setup.exited('c1', 'c1');
        await start('c2', c2Spec.args);
        await setup.agent.stopContainer('c2');
        await setup.agent.disconnect();
        const next = await adoptingDriver(setup.dir);
        try {
          next.agent.adopt({ endpoint: {}, containers: [c1Spec, c2Spec].map((spec) => ({ spec, started: true, running: [] })) });
          await next.agent.reconcile();
          await next.agent.startContainer('c1');
          await until(() => next.text('c1') === 'one\n');
          await pidFor(await next.agent.startContainer('c2'), 'sleep 100');
          expect(seen(await next.agent.stopContainer('c2'))).toEqual(bySignal(143));
        } finally {
          await next.agent.disconnect();
        }
      });

      it('starts the containers again in a new guest after DESTROYPOD (sandbox restart)', async () => {
        await start('c1', ['sleep', '100']);
        await setup.agent.stopSandbox();
        await guest.exit;
        expect(seen(await setup.exited('c1', 'c1'))).toEqual(bySignal(137));
        setup.rec.exits.length = 0;
        guest = await startGuest(setup.agent, flags);
        await setup.agent.startSandbox({});
        const pid = await pidFor(await setup.agent.startContainer('c1'), 'sleep 100');
        expect(alive(pid)).toBe(true);
        expect(seen(await setup.agent.stopContainer('c1'))).toEqual(bySignal(143));
      });

      it('reports a command that cannot start as an error, not an exit (ours at the create, which prepares it)', async () => {
        // Our guest prepares the container at the create; a stock one creates it at the start.
        const create = setup.agent.createContainer(containerSpec('c1', ['/nonexistent/binary']));
        const err = await (stock ? create.then(() => setup.agent.startContainer('c1')) : create).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(VcError);
        // A stock hyperstart's ERROR says nothing: a refusal of unknown cause.
        expect((err as VcError).code).toBe(stock ? 'FailedPrecondition' : 'InvalidArgument');
        expect((err as VcError).message).toMatch(stock ? /refused NEWCONTAINER \(a stock hyperstart gives no reason\)/ : /refused PREPARECONTAINER: \/nonexistent\/binary: no such executable file/);
        expect(setup.rec.exits).toEqual([]);
      });

      it('kills the init process only, or every process with all', async () => {
        await start('c1', ['sleep', '100']);
        await setup.agent.killContainer('c1', 15, false);
        expect(seen(await setup.exited('c1', 'c1'))).toEqual(bySignal(143));
        await setup.agent.stopContainer('c1');

        await start('c2', ['sh', '-c', 'sleep 100 & sleep 100; echo never']);
        await setup.agent.exec('c2', { args: ['sleep', '100'], env: [], cwd: '', user: '', terminal: false }, 'e1');
        await setup.agent.killContainer('c2', 9, true);
        expect(seen(await setup.exited('c2', 'c2'))).toEqual(bySignal(137));
        expect(seen(await setup.exited('c2', 'e1'))).toEqual(bySignal(137));
        expect(setup.text('c2', 'c2')).toBe('');
      });

      it('kills the execs still running when the container stops, reporting their exits first', async () => {
        await start('c1', ['sleep', '100']);
        await setup.agent.exec('c1', { args: ['sleep', '100'], env: [], cwd: '', user: '', terminal: false }, 'e1');
        expect(seen(await setup.agent.stopContainer('c1'))).toEqual(bySignal(143));
        // A stock guest kills the execs as the container goes, before it reports init. Ours
        // reports each as it ends (init's end takes the execs with it in the container's pid
        // namespace): both, in either order.
        const exits = setup.rec.exits.map((e) => [e.execId, seen(e.exit)]);
        const byId = [...exits].sort((a, b) => String(a[0]).localeCompare(String(b[0])));
        expect(stock ? exits : byId).toEqual(stock ? [['e1', bySignal(137)], ['c1', bySignal(143)]] : [['c1', bySignal(143)], ['e1', bySignal(137)]]);
      });

      it('learns exits that happen after it lost and regained the connection', async () => {
        const pid = await pidFor(await start('c1', ['sleep', '100']), 'sleep 100');
        // Another host attaching takes the guest's connection over.
        const other = await new Promise<Socket>((resolve) => {
          const s = createConnection(`${setup.dir}/hyper.sock`, () => resolve(s));
        });
        await until(() => setup.rec.lost.length > 0);
        expect(seen(await setup.agent.waitProcess('c1', 'c1'))).toEqual({ exitStatus: 255, unknown: true });
        other.destroy();
        await setup.agent.connect();
        process.kill(pid, 'SIGTERM');
        // A signal from outside the runtime: a stock guest's 0 cannot be told from a clean exit.
        expect(seen(await setup.exited('c1', 'c1'))).toEqual(stock ? { exitStatus: 0, unknown: false } : bySignal(143));
      });

      it.runIf(stock)('refuses pause and resume with FailedPrecondition: upstream hyperstart has no such command', async () => {
        await start('c1', ['sleep', '100']);
        for (const op of [() => setup.agent.pauseContainer('c1'), () => setup.agent.resumeContainer('c1')]) {
          const err = await op().catch((e: unknown) => e);
          expect(err).toBeInstanceOf(VcError);
          expect((err as VcError).code).toBe('FailedPrecondition');
          expect((err as VcError).message).toMatch(/upstream hyperstart has no such command/);
        }
      });

      // A stock guest cannot pause (the case above checks its refusal).
      it.skipIf(stock)('pauses and resumes every process of a container', async () => {
        const { pid } = await start('c1', ['sleep', '100']);
        await setup.agent.pauseContainer('c1');
        // Frozen by the cgroup freezer (D) where there is one, else stopped by SIGSTOP (T).
        expect(['D', 'T']).toContain(procState(pid));
        await setup.agent.resumeContainer('c1');
        expect(['R', 'S']).toContain(procState(pid)); // running again, or back asleep
      });
    });

    describe('hyperstart guest: exec and ps', () => {
      it('execs in a running container with its own output and exit', async () => {
        await start('c1', ['sleep', '100']);
        const r = await setup.agent.exec('c1', { args: ['sh', '-c', 'echo $X; pwd; exit 7'], env: ['X=exec'], cwd: '/tmp', user: '', terminal: false }, 'e1');
        expect(r).toEqual(stock ? { execId: 'e1', pid: 0, pidUnknown: true } : { execId: 'e1', pid: expect.any(Number) });
        expect((await setup.exited('c1', 'e1')).exitStatus).toBe(7);
        expect(setup.text('c1', 'e1')).toBe('exec\n/tmp\n');
        expect((await setup.agent.waitProcess('c1', 'e1')).exitStatus).toBe(7);
      });

      it('signals one exec process group: SIGTERM to sleep is 143', async () => {
        await start('c1', ['sleep', '100']);
        await setup.agent.exec('c1', { args: ['sleep', '100'], env: [], cwd: '', user: '', terminal: false }, 'e1');
        await setup.agent.signalProcess('c1', 'e1', 15, false);
        expect(seen(await setup.exited('c1', 'e1'))).toEqual(bySignal(143));
        expect(rec('c1')).toBe(false);
      });

      it('gives a terminal process a terminal, its stdout and stderr on one stream', async () => {
        await start('c1', ['sleep', '100']);
        await setup.agent.exec('c1', { args: ['sh', '-c', '[ -t 1 ] && echo tty; echo err >&2'], env: [], cwd: '', user: '', terminal: true }, 'e1');
        await setup.exited('c1', 'e1');
        expect(setup.text('c1', 'e1')).toBe('tty\r\nerr\r\n');
        expect(setup.text('c1', 'e1', 'stderr')).toBe('');
      });

      it('resizes the terminal of a process (WINSIZE)', async () => {
        await start('c1', ['sleep', '100']);
        await setup.agent.exec('c1', { args: ['sh', '-c', 'echo ready; read go; stty size'], env: [], cwd: '', user: '', terminal: true }, 't1');
        // Resized once the process runs on its terminal (before, the guest may still be setting it up).
        await until(() => setup.text('c1', 't1').startsWith('ready'));
        await setup.agent.winsizeProcess('c1', 't1', 40, 100);
        await setup.agent.writeProcessStdin('c1', 't1', Buffer.from('go\n'));
        expect((await setup.exited('c1', 't1')).exitStatus).toBe(0);
        expect(setup.text('c1', 't1')).toMatch(/^ready\r\ngo\r\n40 100\r\n$/);
        const err = await setup.agent.winsizeProcess('c1', 'c1', 10, 10).catch((e: unknown) => e);
        expect((err as VcError).code).toBe('FailedPrecondition');
        expect((err as VcError).message).toMatch(stock ? /refused WINSIZE/ : /has no terminal/);
      });

      it('starts a terminal process at its consoleSize (stock: WINSIZE right after the start)', async () => {
        await start('c1', ['sleep', '100']);
        const spec = { args: ['sh', '-c', 'stty size; read go; stty size'], env: [], cwd: '', user: '', terminal: true, consoleSize: { rows: 30, cols: 90 } };
        await setup.agent.exec('c1', spec, 't2');
        // Typed once the first line is out, so that the terminal's echo of it comes after.
        await until(() => setup.text('c1', 't2').includes('\n'));
        await setup.agent.writeProcessStdin('c1', 't2', Buffer.from('go\n'));
        expect((await setup.exited('c1', 't2')).exitStatus).toBe(0);
        // Our guest sizes the terminal before the process runs; a stock one only once the
        // start is answered, so what the process printed at once is of the size before (or none).
        expect(setup.text('c1', 't2')).toMatch(stock ? /^[^\r\n]*\r\ngo\r\n30 90\r\n$/ : /^30 90\r\ngo\r\n30 90\r\n$/);
      });

      it('lists the container processes as a JSON array of pids', async () => {
        const pid = await pidFor(await start('c1', ['sh', '-c', 'sleep 100 & sleep 101; :']), 'sh -c sleep 100 & sleep 101; :');
        const e = await pidFor(await setup.agent.exec('c1', { args: ['sleep', '102'], env: [], cwd: '', user: '', terminal: false }, 'e1'), 'sleep 102');
        await until(() => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ').length === 2);
        // Another container's processes are not this one's.
        await start('other', ['sleep', '103']);
        const pids = JSON.parse(Buffer.from(await setup.agent.processListContainer('c1', { format: 'json', args: [] })).toString()) as number[];
        // sh, its two sleeps, the exec'd sleep; a stock listing is ps run in the container, so it
        // also shows the init of the container's pid namespace (pid 1), as a real one shows the pod's.
        expect(pids).toHaveLength(stock ? 5 : 4);
        expect(pids.includes(1)).toBe(stock);
        expect(pids).toContain(listed(pid));
        expect(pids).toContain(listed(e));
        expect(pids).not.toContain(guest.pid);
        // The internal exec of a stock guest's listing is never reported as a user's process.
        expect(setup.rec.exits.filter((x) => x.execId.startsWith('vc-ps-'))).toEqual([]);
      });

      it('lists the container processes as a ps table with the requested args', async () => {
        const pid = await pidFor(await start('c1', ['sleep', '100']), 'sleep 100');
        const table = Buffer.from(await setup.agent.processListContainer('c1', { format: 'table', args: [] })).toString();
        const lines = table.trim().split('\n');
        // Our guest lists with its own ps (procps: -ef); a stock one's listing is the container's
        // own ps run in the container, here the default rootfs's busybox.
        expect(lines[0]).toMatch(stock ? /^\s*PID\s+USER/ : /^UID\s+PID\s+PPID/);
        // A stock listing also shows the container's pid-namespace init (pid 1).
        expect(lines).toHaveLength(stock ? 3 : 2);
        expect(lines.at(-1)).toMatch(new RegExp(`(^|\\s)${listed(pid)}\\s.*sleep 100$`));

        const custom = Buffer.from(await setup.agent.processListContainer('c1', { format: 'table', args: ['-o', 'pid,comm'] })).toString();
        expect(custom.trim().split('\n')).toEqual([
          expect.stringMatching(/PID\s+COMMAND/),
          ...(stock ? [expect.stringMatching(/^\s*1\s+\S+/)] : []),
          expect.stringMatching(new RegExp(`(^|\\s)${listed(pid)}\\s+sleep`)),
        ]);
        const err = await setup.agent.processListContainer('c1', { format: 'table', args: ['-o', 'comm'] }).catch((e: unknown) => e);
        expect((err as VcError).code).toBe('Internal');
        expect((err as VcError).message).toMatch(/no PID column/);
      });
    });

    describe('hyperstart guest: liveness and shutdown', () => {
      it('check = PING; a SIGSTOPped guest misses the deadline, and answers again after SIGCONT', async () => {
        await setup.agent.check(AbortSignal.timeout(2_000));
        guest.child.kill('SIGSTOP');
        const err = await setup.agent.check(AbortSignal.timeout(200)).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(VcError);
        expect((err as VcError).code).toBe('DeadlineExceeded');
        guest.child.kill('SIGCONT');
        await setup.agent.check(AbortSignal.timeout(5_000));
      });

      it('DESTROYPOD ends every container, is answered, and the guest exits 0', async () => {
        const pid = await pidFor(await start('c1', ['sleep', '100']), 'sleep 100');
        await setup.agent.stopSandbox();
        expect(await guest.exit).toEqual({ code: 0, signal: null });
        expect(alive(pid)).toBe(false);
        expect(setup.rec.lost).toEqual([]);
        expect(seen(await setup.exited('c1', 'c1'))).toEqual(bySignal(137));
      });

      it('exits cleanly on SIGTERM, ending its processes; the host sees the connection go', async () => {
        const pid = await pidFor(await start('c1', ['sleep', '100']), 'sleep 100');
        guest.child.kill('SIGTERM');
        expect(await guest.exit).toEqual({ code: 0, signal: null });
        expect(alive(pid)).toBe(false);
        await until(() => setup.rec.lost.length > 0);
        const err = await setup.agent.check(AbortSignal.timeout(1_000)).catch((e: unknown) => e);
        expect((err as VcError).code).toBe('Unavailable');
      });

      it('onlineCPUMem is acknowledged', async () => {
        await setup.agent.onlineCPUMem(2);
      });
    });
  });
}

/** A root filesystem holding only sh and the libraries it links (from ldd). */
function minimalRootfs(root: string): string {
  const sh = realpathSync('/bin/sh');
  const libs = execFileSync('ldd', [sh], { encoding: 'utf8' })
    .split('\n')
    .map((l) => /(\/\S+) \(0x/.exec(l)?.[1])
    .filter((p): p is string => !!p);
  for (const [from, to] of [[sh, '/bin/sh'], ...libs.map((l) => [l, l])] as Array<[string, string]>) {
    mkdirSync(join(root, dirname(to)), { recursive: true });
    copyFileSync(from, join(root, to));
  }
  mkdirSync(join(root, 'work'));
  return root;
}

function rec(cid: string): boolean {
  return setup.rec.exits.some((e) => e.cid === cid && e.execId === cid);
}
