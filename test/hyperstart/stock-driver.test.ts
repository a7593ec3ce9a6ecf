// The driver against our guest's stock mode run as the namespace backend runs a guest (PID
import { execFileSync } from 'node:child_process';
// 1 of its own pid namespace): every container of the pod shares that namespace, so ps in
// a container sees the pod's init as pid 1 and the other containers' processes, and the
// containers use busybox's ps (which rewrites `-o pid=,args=` in its own command line).
// The listing must still be the container's processes only, found without PSCONTAINER.
import { mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessTable } from '../../actors/agents/hyperstart-procs.js';
import { buildBusyboxRootfs } from '../kata/helpers.js';
import { containerSpec, setupDriver, startGuest, type DriverSetup, type GuestProcess } from './harness.js';

describe('hyperstart driver, stock guest as PID 1: ps in the pod-wide pid namespace', () => {
  let setup: DriverSetup;
  let guest: GuestProcess;
  let rootfs: string;
  beforeAll(async () => {
    rootfs = buildBusyboxRootfs();
    mkdirSync(`${rootfs}/proc`);
    symlinkSync('busybox', `${rootfs}/bin/ps`);
    // sh gives a background command /dev/null as its stdin.
    mkdirSync(`${rootfs}/dev`);
    execFileSync('mknod', ['-m', '666', `${rootfs}/dev/null`, 'c', '1', '3']);
    setup = await setupDriver({ callTimeoutMs: 10_000 }, { stopGraceMs: 2_000 });
    guest = await startGuest(setup.agent, ['--stock'], { pid1: true, procIn: [rootfs] });
    await setup.agent.startSandbox({});
    for (const [id, secs] of [['a', '101'], ['b', '102']] as const) {
      await setup.agent.createContainer(containerSpec(id, ['sleep', secs], { rootfs, env: ['PATH=/bin'] }));
      await setup.agent.startContainer(id);
    }
    await setup.agent.exec('a', { args: ['sh', '-c', 'sleep 103 & sleep 104; :'], env: ['PATH=/bin'], cwd: '/', user: '', terminal: false }, 'side');
  });
  afterAll(async () => {
    await guest?.kill();
    await setup?.cleanup();
    if (rootfs) rmSync(rootfs, { recursive: true, force: true });
  });

  /**
   * Guest-namespace pids (what ps there shows) of this guest's processes whose command line
   * ends with one of `texts`, wrappers aside, in one pass over /proc: a child between its
   * fork and its exec still shows its parent's command line, so separate passes could count
   * it twice.
   */
  const nsPids = (...texts: string[]): number[] => {
    const out: number[] = [];
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
        const line = argv.join(' ').trimEnd();
        if (!texts.some((text) => line.endsWith(text)) || /nsenter$/.test(argv[0] ?? '')) continue;
        const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${e}/status`, 'utf8'))?.[1]?.trim().split(/\s+/) ?? [];
        // host, the guest's namespace, (the reaper's): only processes of this guest have a second level
        if (nspid.length > 1 && isBelow(Number(e), guest.pid)) out.push(Number(nspid[1]));
      } catch {
        // gone
      }
    }
    return out.sort((a, b) => a - b);
  };

  it('lists as json exactly the container init, its exec and the exec\'s children, not pid 1, another container or the listing itself', async () => {
    // busybox sh runs its applets in forked copies of itself: they show the exec's command line.
    const side = () => nsPids('sleep 103 & sleep 104; :', 'sleep 103', 'sleep 104');
    for (let i = 0; i < 500 && side().length < 3; i++) await new Promise((r) => setTimeout(r, 10));
    expect(side()).toHaveLength(3); // the exec's shell and its two sleeps
    const want = [...nsPids('sleep 101'), ...side()].sort((a, b) => a - b);
    const pids = JSON.parse(Buffer.from(await setup.agent.processListContainer('a', { format: 'json', args: [] })).toString()) as number[];
    expect([...pids].sort((x, y) => x - y)).toEqual(want);
    expect(pids).not.toContain(1);
    expect(pids).not.toContain(nsPids('sleep 102')[0]);
    expect(setup.rec.exits.filter((e) => e.execId.startsWith('vc-ps-'))).toEqual([]);
  });

  it("lists a table with busybox's ps: its header and the container's lines only", async () => {
    const table = Buffer.from(await setup.agent.processListContainer('b', { format: 'table', args: ['-o', 'pid,args'] })).toString();
    expect(table.trim().split('\n')).toEqual([expect.stringMatching(/^\s*PID\s+COMMAND$/), expect.stringMatching(new RegExp(`^\\s*${nsPids('sleep 102')[0]}\\s+\\S*sleep 102$`))]);
  });

  it('kills every process with all: each exec by SIGNALPROCESS, then init; the exits are unknown (reported as 0)', async () => {
    await setup.agent.killContainer('a', 15, true);
    expect((await setup.exited('a', 'a'))).toMatchObject({ exitStatus: 255, exitStatusUnknown: true });
    expect((await setup.exited('a', 'side'))).toMatchObject({ exitStatus: 255, exitStatusUnknown: true });
    // The container is gone from the guest; stopping it again is no failure.
    expect(await setup.agent.stopContainer('a')).toMatchObject({ exitStatusUnknown: true });
  });
});

describe('hyperstart process table', () => {
  const table = () => new ProcessTable({ output: () => {}, exited: () => {} });

  it('completes an exit once the stdio EOF came when the guest sends none on stderr (stock)', () => {
    const procs = table();
    const rec = procs.add('c', 'c', false, false);
    procs.data(rec.stdio, new Uint8Array());
    procs.finished('c', 'c', 3);
    expect(rec.exit).toMatchObject({ exitStatus: 3 });
  });

  it('waits for the stderr EOF too when the guest sends one (ours), and marks unknown statuses', () => {
    const procs = table();
    const rec = procs.add('c', 'c', false);
    procs.data(rec.stdio, new Uint8Array());
    procs.finished('c', 'c', 0, true);
    expect(rec.exit).toBeUndefined();
    procs.data(rec.stderr, new Uint8Array());
    expect(rec.exit).toMatchObject({ exitStatus: 255, exitStatusUnknown: true });
  });
});

/** Whether `pid` descends from `root` (by parent links in /proc). */
function isBelow(pid: number, root: number): boolean {
  for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
    try {
      p = Number(readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1]);
    } catch {
      return false;
    }
    if (p === root) return true;
  }
  return false;
}
