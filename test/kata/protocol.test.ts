// The kata guest agent over its gRPC protocol, started as a plain child process: every
// call really runs processes, and what comes back is what they did.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { VcError } from '../../bus/errors.js';
import type { KataConnection } from '../../actors/agents/kata-client.js';
import { buildBusyboxRootfs, containerRequest, eventually, readAll, run, startGuest, type Guest } from './helpers.js';

const T = 5000;

async function code(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof VcError) return `${err.code}: ${err.message}`;
    throw err;
  }
  return 'ok';
}

describe('kata guest agent: sandbox', () => {
  let guest: Guest;
  beforeAll(async () => {
    guest = await startGuest();
  });
  afterAll(() => guest?.stop());

  it('answers Check with SERVING and Version with the 2018 API version', async () => {
    expect(await guest.conn.health('Check', { service: '' }, T)).toEqual({ status: 1 });
    const v = await guest.conn.health('Version', { service: '' }, T);
    expect(v.grpc_version).toBe('0.0.1');
    expect(v.agent_version).toMatch(/kata-agent/);
  });

  it('refuses container calls before CreateSandbox, then allows one sandbox only', async () => {
    expect(await code(guest.conn.call('CreateContainer', containerRequest('early', ['true']), T))).toMatch(/^FailedPrecondition: CreateContainer: the sandbox is not created/);
    expect(await code(guest.conn.call('SignalProcess', { container_id: 'x', exec_id: '', signal: 15 }, T))).toMatch(/^FailedPrecondition/);
    await guest.conn.call('CreateSandbox', { hostname: 'h1', sandbox_id: 's1' }, T);
    expect(await code(guest.conn.call('CreateSandbox', { hostname: 'h2', sandbox_id: 's2' }, T))).toMatch(/^AlreadyExists: CreateSandbox: sandbox s1 already exists/);
    await guest.conn.call('DestroySandbox', {}, T);
    await guest.conn.call('DestroySandbox', {}, T); // no sandbox: a no-op
    await guest.conn.call('CreateSandbox', { hostname: 'h3', sandbox_id: 's3' }, T);
    await guest.conn.call('DestroySandbox', {}, T);
  });

  it('listens on a bare socket path and on loopback tcp as well', async () => {
    for (const listen of ['bare', 'tcp'] as const) {
      const other = await startGuest({ listen });
      try {
        expect(other.address.startsWith(listen === 'tcp' ? 'tcp://127.0.0.1:' : '/')).toBe(true);
        expect(await other.conn.health('Check', { service: '' }, T)).toEqual({ status: 1 });
      } finally {
        await other.stop();
      }
    }
  });

  it('returns at once from OnlineCPUMem without wait', async () => {
    await guest.conn.call('CreateSandbox', { hostname: 'cpu', sandbox_id: 'cpu' }, T);
    await guest.conn.call('OnlineCPUMem', { wait: false, nb_cpus: 2 }, T);
    await guest.conn.call('DestroySandbox', {}, T);
  });
});

describe('kata guest agent: processes', () => {
  let guest: Guest;
  let conn: KataConnection;
  let rootfs: string;
  beforeAll(async () => {
    guest = await startGuest();
    conn = guest.conn;
    rootfs = buildBusyboxRootfs();
    await conn.call('CreateSandbox', { hostname: 'procs', sandbox_id: 'procs' }, T);
  });
  afterAll(async () => {
    await guest?.stop();
    if (rootfs) rmSync(rootfs, { recursive: true, force: true });
  });

  it('returns stdout and stderr apart, the exit status, and forgets the process after WaitProcess', async () => {
    const pid = await run(conn, 'out', ['sh', '-c', 'echo hello; echo oops >&2; exit 3']);
    expect(pid).toBeGreaterThan(0);
    const [stdout, stderr, wait] = await Promise.all([readAll(conn, 'out', 'out'), readAll(conn, 'out', 'out', 'stderr'), conn.call('WaitProcess', { container_id: 'out', exec_id: 'out' })]);
    expect(stdout).toBe('hello\n');
    expect(stderr).toBe('oops\n');
    expect(wait.response.status).toBe(3);
    expect(await code(conn.call('WaitProcess', { container_id: 'out', exec_id: 'out' }, T))).toMatch(/^NotFound/);
    expect(await code(conn.call('StartContainer', { container_id: 'out' }, T))).toMatch(/^FailedPrecondition/);
    expect(await code(conn.call('CreateContainer', containerRequest('out', ['true']), T))).toMatch(/^AlreadyExists/);
    await conn.call('RemoveContainer', { container_id: 'out', timeout: 0 }, T);
    expect(await code(conn.call('WaitProcess', { container_id: 'out', exec_id: 'out' }, T))).toMatch(/^NotFound: WaitProcess: container out does not exist/);
  });

  it('reports 143 after SIGTERM to sleep', async () => {
    await run(conn, 'sleeper', ['sleep', '60']);
    await conn.call('SignalProcess', { container_id: 'sleeper', exec_id: 'sleeper', signal: 15 }, T);
    expect((await conn.call('WaitProcess', { container_id: 'sleeper', exec_id: 'sleeper' })).response.status).toBe(143);
    await conn.call('RemoveContainer', { container_id: 'sleeper', timeout: 0 }, T);
  });

  it('signals every process of the container for an empty exec id', async () => {
    const pid = await run(conn, 'family', ['sh', '-c', 'sleep 60 & sleep 61 & wait']);
    const list = async () => JSON.parse(Buffer.from((await conn.call('ListProcesses', { container_id: 'family', format: 'json' }, T)).response.process_list!).toString()) as number[];
    for (let i = 0; i < 200 && (await list()).length < 3; i++) await sleep(10);
    const pids = await list();
    expect(pids[0]).toBe(pid);
    expect(pids).toHaveLength(3);
    await conn.call('SignalProcess', { container_id: 'family', exec_id: '', signal: 15 }, T);
    expect((await conn.call('WaitProcess', { container_id: 'family', exec_id: 'family' })).response.status).toBe(143);
    const alive = (p: number) => existsSync(`/proc/${p}`) && !readFileSync(`/proc/${p}/stat`, 'utf8').includes(') Z ');
    expect(await eventually(() => !pids.some(alive))).toBe(true);
    await conn.call('RemoveContainer', { container_id: 'family', timeout: 0 }, T);
  });

  it('execs in a running container, lists processes as json and as a table, and refuses bad formats', async () => {
    const init = await run(conn, 'box', ['sleep', '61']);
    const { trailers } = await conn.call('ExecProcess', { container_id: 'box', exec_id: 'side', process: { Args: ['sleep', '62'], Env: [], Cwd: '/' } }, T);
    const side = Number(trailers.get('x-virtactors-pid')[0]);
    expect(side).toBeGreaterThan(0);
    expect(await code(conn.call('ExecProcess', { container_id: 'box', exec_id: 'side', process: { Args: ['true'] } }, T))).toMatch(/^AlreadyExists/);

    const json = await conn.call('ListProcesses', { container_id: 'box', format: 'json', args: [] }, T);
    expect(JSON.parse(Buffer.from(json.response.process_list!).toString())).toEqual([init, side]);
    const table = Buffer.from((await conn.call('ListProcesses', { container_id: 'box', format: 'table', args: [] }, T)).response.process_list!).toString();
    const lines = table.trim().split('\n');
    expect(lines[0]).toMatch(/^UID\s+PID\s+PPID/);
    expect(lines).toHaveLength(3);
    expect(lines.some((l) => l.includes('sleep 61') && l.includes(String(init)))).toBe(true);
    expect(lines.some((l) => l.includes('sleep 62') && l.includes(String(side)))).toBe(true);
    const custom = Buffer.from((await conn.call('ListProcesses', { container_id: 'box', format: 'table', args: ['-o', 'pid,comm'] }, T)).response.process_list!).toString();
    expect(custom.trim().split('\n').map((l) => l.trim().split(/\s+/))).toEqual([['PID', 'COMMAND'], [String(init), 'sleep'], [String(side), 'sleep']]);
    expect(await code(conn.call('ListProcesses', { container_id: 'box', format: 'yaml', args: [] }, T))).toBe('InvalidArgument: ListProcesses: invalid format option');

    const exec = await conn.call('ExecProcess', { container_id: 'box', exec_id: 'e7', process: { Args: ['sh', '-c', 'echo from-exec; exit 7'], Env: [] } }, T);
    expect(exec.response).toEqual({});
    expect(await readAll(conn, 'box', 'e7')).toBe('from-exec\n');
    expect((await conn.call('WaitProcess', { container_id: 'box', exec_id: 'e7' })).response.status).toBe(7);

    // Init gone: the container stops, its other processes die with it, exec is refused.
    await conn.call('SignalProcess', { container_id: 'box', exec_id: 'box', signal: 9 }, T);
    expect((await conn.call('WaitProcess', { container_id: 'box', exec_id: 'box' })).response.status).toBe(137);
    expect((await conn.call('WaitProcess', { container_id: 'box', exec_id: 'side' })).response.status).toBe(137);
    expect(await code(conn.call('ExecProcess', { container_id: 'box', exec_id: 'late', process: { Args: ['true'] } }, T))).toMatch(/^FailedPrecondition: ExecProcess: container box is stopped/);
    await conn.call('RemoveContainer', { container_id: 'box', timeout: 0 }, T);
  });

  it('writes and closes stdin', async () => {
    await run(conn, 'cat', ['cat']);
    expect((await conn.call('WriteStdin', { container_id: 'cat', exec_id: 'cat', data: Buffer.from('through stdin\n') }, T)).response.len).toBe(14);
    await conn.call('CloseStdin', { container_id: 'cat', exec_id: 'cat' }, T);
    expect(await readAll(conn, 'cat', 'cat')).toBe('through stdin\n');
    expect((await conn.call('WaitProcess', { container_id: 'cat', exec_id: 'cat' })).response.status).toBe(0);
    await conn.call('RemoveContainer', { container_id: 'cat', timeout: 0 }, T);
  });

  it('resizes a terminal, and refuses TtyWinResize without one', async () => {
    // The terminal is the guest's (its name does not resolve in the container's own /dev/pts).
    await run(conn, 'tty', ['sh', '-c', 'read line; stty size; [ -t 0 ] && [ -t 1 ] && echo on-a-terminal'], { terminal: true });
    await conn.call('TtyWinResize', { container_id: 'tty', exec_id: 'tty', row: 33, column: 101 }, T);
    await conn.call('WriteStdin', { container_id: 'tty', exec_id: 'tty', data: Buffer.from('go\n') }, T);
    const out = await readAll(conn, 'tty', 'tty');
    expect(out).toContain('33 101\r\n');
    expect(out).toContain('on-a-terminal\r\n');
    expect(await readAll(conn, 'tty', 'tty', 'stderr')).toBe('');
    expect((await conn.call('WaitProcess', { container_id: 'tty', exec_id: 'tty' })).response.status).toBe(0);
    await conn.call('RemoveContainer', { container_id: 'tty', timeout: 0 }, T);

    await run(conn, 'notty', ['sleep', '60']);
    expect(await code(conn.call('TtyWinResize', { container_id: 'notty', exec_id: 'notty', row: 10, column: 10 }, T))).toMatch(/^FailedPrecondition: TtyWinResize: process notty has no terminal/);
    await conn.call('RemoveContainer', { container_id: 'notty', timeout: 0 }, T);
    expect(await code(conn.call('WaitProcess', { container_id: 'notty', exec_id: 'notty' }, T))).toMatch(/^NotFound: WaitProcess: container notty does not exist/);
  });

  it('runs a container with a root path inside that rootfs only, as the given user and cwd', async () => {
    const req = containerRequest('rooted', ['/bin/sh', '-c', 'cat /marker; ls /; id -u; pwd'], { root: rootfs });
    req.OCI!.Process!.User = { UID: 65534, GID: 65534 };
    req.OCI!.Process!.Cwd = '/bin';
    await conn.call('CreateContainer', req, T);
    await conn.call('StartContainer', { container_id: 'rooted' }, T);
    const out = (await readAll(conn, 'rooted', 'rooted')).split('\n');
    expect(out[0]).toBe('inside the rootfs');
    // Its own files, and the mount points the OCI runtime makes for /dev, /proc and /sys.
    expect(out.slice(1, 6)).toEqual(['bin', 'dev', 'marker', 'proc', 'sys']);
    expect(out.slice(6, 8)).toEqual(['65534', '/bin']);
    expect((await conn.call('WaitProcess', { container_id: 'rooted', exec_id: 'rooted' })).response.status).toBe(0);
    await conn.call('RemoveContainer', { container_id: 'rooted', timeout: 0 }, T);
    // A program the rootfs does not have is refused at creation.
    expect(await code(conn.call('CreateContainer', containerRequest('missing', ['bash', '-c', 'true'], { root: rootfs }), T))).toMatch(/^InvalidArgument: CreateContainer: bash: executable file not found/);
  });

  it('kills what is left on RemoveContainer and reports the exit', async () => {
    await run(conn, 'victim', ['sleep', '60']);
    const wait = conn.call('WaitProcess', { container_id: 'victim', exec_id: 'victim' });
    await conn.call('RemoveContainer', { container_id: 'victim', timeout: 0 }, T);
    expect((await wait).response.status).toBe(137);
    expect(await code(conn.call('SignalProcess', { container_id: 'victim', exec_id: 'victim', signal: 15 }, T))).toMatch(/^NotFound/);
  });
});

describe('kata guest agent: cgroups', () => {
  let guest: Guest;
  let conn: KataConnection;
  beforeAll(async () => {
    guest = await startGuest();
    conn = guest.conn;
    await conn.call('CreateSandbox', { hostname: 'cg', sandbox_id: 'cg' }, T);
  });
  afterAll(() => guest?.stop());

  it('applies limits from the spec and from UpdateContainer, and reports them in StatsContainer', async () => {
    const req = containerRequest('limited', ['sleep', '60']);
    req.OCI!.Linux = { Resources: { Memory: { Limit: 256 * 1024 * 1024 }, Pids: { Limit: 40 } } };
    await conn.call('CreateContainer', req, T);
    await conn.call('StartContainer', { container_id: 'limited' }, T);
    let stats = (await conn.call('StatsContainer', { container_id: 'limited' }, T)).response.cgroup_stats!;
    expect(stats.memory_stats?.usage?.limit).toBe(String(256 * 1024 * 1024)); // 64-bit values decode as exact strings
    // The container's init (tini) and its program.
    expect(stats.pids_stats).toEqual({ current: '2', limit: '40' });
    expect(Number(stats.cpu_stats?.cpu_usage?.total_usage)).toBeGreaterThan(0);
    expect(Number(stats.memory_stats?.usage?.usage)).toBeGreaterThan(0);

    await conn.call('UpdateContainer', { container_id: 'limited', resources: { Memory: { Limit: 64 * 1024 * 1024 }, Pids: { Limit: 12 } } }, T);
    stats = (await conn.call('StatsContainer', { container_id: 'limited' }, T)).response.cgroup_stats!;
    expect(stats.memory_stats?.usage?.limit).toBe(String(64 * 1024 * 1024));
    expect(stats.pids_stats?.limit).toBe('12');
    await conn.call('RemoveContainer', { container_id: 'limited', timeout: 0 }, T);
  });

  it('gives up on RemoveContainer after its timeout when a process cannot die', async () => {
    const freezer = '/sys/fs/cgroup/freezer';
    if (!existsSync(`${freezer}/cgroup.procs`)) return; // needs a v1 freezer outside the container's own cgroup
    const pid = await run(conn, 'stuck', ['sleep', '60']);
    // Frozen from outside the container, the process holds on to SIGKILL.
    const jail = `${freezer}/kata-test-${process.pid}`;
    mkdirSync(jail);
    try {
      writeFileSync(`${jail}/cgroup.procs`, String(pid));
      writeFileSync(`${jail}/freezer.state`, 'FROZEN');
      expect(await code(conn.call('RemoveContainer', { container_id: 'stuck', timeout: 1 }, T))).toBe('DeadlineExceeded: RemoveContainer: Timeout reached after 1s');
    } finally {
      writeFileSync(`${jail}/freezer.state`, 'THAWED');
    }
    expect((await conn.call('WaitProcess', { container_id: 'stuck', exec_id: 'stuck' })).response.status).toBe(137);
    await conn.call('RemoveContainer', { container_id: 'stuck', timeout: 0 }, T);
    for (let i = 0; i < 100; i++) {
      try {
        rmdirSync(jail);
        break;
      } catch {
        await sleep(10);
      }
    }
    expect(existsSync(jail)).toBe(false);
  });
});

const unifiedMounted = existsSync('/sys/fs/cgroup/cgroup.controllers') || existsSync('/sys/fs/cgroup/unified/cgroup.procs');

for (const [name, flags] of [
  ['the v1 freezer', ['--cgroups', 'v1']],
  ['the v2 freezer', ['--cgroups', 'v2']],
  ['SIGSTOP (no cgroups)', ['--cgroups', 'none']],
] as const) {
  // The v2 freezer needs a mounted cgroup v2 hierarchy; hosts without one skip that variant only.
  describe.skipIf(flags[1] === 'v2' && !unifiedMounted)(`kata guest agent: pause and resume with ${name}`, () => {
    let guest: Guest;
    let conn: KataConnection;
    beforeAll(async () => {
      guest = await startGuest({ flags: [...flags] });
      conn = guest.conn;
      await conn.call('CreateSandbox', { hostname: 'p', sandbox_id: 'p' }, T);
      expect(guest.stderr()).toContain(`"cgroups":"${flags[1]}"`);
    });
    afterAll(() => guest?.stop());

    it('stops all output while paused and lets it flow again after resume', async () => {
      await run(conn, 'ticker', ['sh', '-c', 'while :; do echo tick; sleep 0.02; done']);
      const read = (ms: number) => conn.call('ReadStdout', { container_id: 'ticker', exec_id: 'ticker', len: 65536 }, ms);
      expect(Buffer.from((await read(T)).response.data!).toString()).toContain('tick');
      await conn.call('PauseContainer', { container_id: 'ticker' }, T);
      expect(await code(conn.call('PauseContainer', { container_id: 'ticker' }, T))).toMatch(/^FailedPrecondition/);
      // What was written before the pause drains; then nothing more comes.
      let silent = false;
      for (let i = 0; i < 50 && !silent; i++) silent = (await code(read(300))).startsWith('DeadlineExceeded');
      expect(silent).toBe(true);
      await conn.call('ResumeContainer', { container_id: 'ticker' }, T);
      expect(Buffer.from((await read(T)).response.data!).toString()).toContain('tick');
      // SIGKILL reaches a paused container.
      await conn.call('PauseContainer', { container_id: 'ticker' }, T);
      await conn.call('SignalProcess', { container_id: 'ticker', exec_id: 'ticker', signal: 9 }, T);
      expect((await conn.call('WaitProcess', { container_id: 'ticker', exec_id: 'ticker' })).response.status).toBe(137);
      await conn.call('RemoveContainer', { container_id: 'ticker', timeout: 0 }, T);
    });

    if (flags[1] === 'v2') {
      it('counts cpu time in the unified hierarchy, and reports limits it cannot set', async () => {
        await run(conn, 'busy', ['sh', '-c', 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 60']);
        const json = await conn.call('ListProcesses', { container_id: 'busy', format: 'json' }, T);
        expect(JSON.parse(Buffer.from(json.response.process_list!).toString())).toHaveLength(1);
        let cpu = 0;
        for (let i = 0; i < 100 && cpu === 0; i++) {
          cpu = Number((await conn.call('StatsContainer', { container_id: 'busy' }, T)).response.cgroup_stats?.cpu_stats?.cpu_usage?.total_usage ?? 0);
          if (cpu === 0) await sleep(10);
        }
        expect(cpu).toBeGreaterThan(0);
        // This host's unified hierarchy carries no controllers: a memory limit cannot be set there.
        if (!existsSync('/sys/fs/cgroup/cgroup.controllers')) {
          expect(await code(conn.call('UpdateContainer', { container_id: 'busy', resources: { Memory: { Limit: 1 << 26 } } }, T))).toMatch(/^FailedPrecondition: UpdateContainer: .*memory.max/);
        }
        await conn.call('RemoveContainer', { container_id: 'busy', timeout: 0 }, T);
      });
    }

    if (flags[1] === 'none') {
      it('has no stats without cgroups', async () => {
        await run(conn, 'nostats', ['sleep', '60']);
        expect(await code(conn.call('StatsContainer', { container_id: 'nostats' }, T))).toMatch(/^FailedPrecondition: StatsContainer: container nostats has no cgroup/);
        await conn.call('RemoveContainer', { container_id: 'nostats', timeout: 0 }, T);
      });
    }
  });
}

describe('kata guest agent: a guest that does not answer', () => {
  let guest: Guest;
  beforeAll(async () => {
    guest = await startGuest();
  });
  afterAll(async () => {
    process.kill(guest.pid, 'SIGCONT');
    await guest?.stop();
  });

  it('makes calls fail with DeadlineExceeded, and answers again once it runs', async () => {
    process.kill(guest.pid, 'SIGSTOP');
    try {
      expect(await code(guest.conn.health('Check', { service: '' }, 300))).toMatch(/^DeadlineExceeded: Health.Check/);
    } finally {
      process.kill(guest.pid, 'SIGCONT');
    }
    expect(await guest.conn.health('Check', { service: '' }, T)).toEqual({ status: 1 });
  });
});
