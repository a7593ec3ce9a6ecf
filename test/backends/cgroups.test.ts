// The cgroup drivers against the host's real cgroups: v1 here (and on hybrid hosts), v2
// through the unified hierarchy when it is mounted and writable.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { afterAll, describe, expect, it } from 'vitest';
import {
  chooseCgroupDriver,
  CgroupV2Driver,
  limitsFromAnnotations,
  LimitAnnotation,
  readHostCgroups,
  type CgroupDriver,
  type Hierarchy,
} from '../../actors/backends/cgroups/index.js';
import { VcError } from '../../bus/errors.js';
import { alive, cgroupOwner, incarnation, isRoot, quietLog, sandboxCgroupDirs, sandboxCgroupPattern, sandboxId, TEST_HOST, waitFor } from './helpers.js';

describe('limits from annotations', () => {
  it('reads sizes, counts and cores', () => {
    expect(limitsFromAnnotations({})).toEqual({});
    expect(
      limitsFromAnnotations({ [LimitAnnotation.memory]: '256M', [LimitAnnotation.pids]: '100', [LimitAnnotation.cpus]: '1.5' }),
    ).toEqual({ memoryBytes: 256 * 1024 ** 2, pidsMax: 100, cpus: 1.5 });
    expect(limitsFromAnnotations({ [LimitAnnotation.memory]: '1Gi' }).memoryBytes).toBe(1024 ** 3);
    expect(limitsFromAnnotations({ [LimitAnnotation.memory]: '4096' }).memoryBytes).toBe(4096);
  });

  it('rejects malformed values as InvalidArgument', () => {
    for (const [key, value] of [
      [LimitAnnotation.memory, 'lots'],
      [LimitAnnotation.memory, '0'],
      [LimitAnnotation.pids, '-1'],
      [LimitAnnotation.pids, '2.5'],
      [LimitAnnotation.cpus, 'half'],
      [LimitAnnotation.cpus, '0'],
    ] as const) {
      let caught: unknown;
      try {
        limitsFromAnnotations({ [key]: value });
      } catch (err) {
        caught = err;
      }
      expect(caught, `${key}=${value}`).toBeInstanceOf(VcError);
      expect((caught as VcError).code).toBe('InvalidArgument');
    }
  });
});

describe('driver choice', () => {
  const h = (mount: string, controllers: string[], writable: boolean): Hierarchy => ({ mount, controllers, own: mount, writable });

  it('prefers v1 controllers, falls back to v2, and runs without cgroups when nothing is writable', () => {
    const v1 = [h('/sys/fs/cgroup/memory', ['memory'], true), h('/sys/fs/cgroup/pids', ['pids'], false)];
    const v2 = h('/sys/fs/cgroup/unified', [], true);
    expect(chooseCgroupDriver({ v1, v2 }, quietLog)?.version).toBe(1);
    expect(chooseCgroupDriver({ v1: [], v2 }, quietLog)?.version).toBe(2);
    expect(chooseCgroupDriver({ v1: [], v2: { ...v2, writable: false } }, quietLog)).toBeUndefined();
    expect(chooseCgroupDriver({ v1: v1.map((x) => ({ ...x, writable: false })), v2 }, quietLog)).toBeUndefined();
    expect(chooseCgroupDriver({ v1: [], v2: undefined }, quietLog)).toBeUndefined();
  });
});

/** A shell that joins the cgroup, starts a child in a nested cgroup of its own, and waits. */
async function joiner(procsFiles: readonly string[]): Promise<{ child: ChildProcess; pids: number[] }> {
  const script = `for f; do echo 0 > "$f" || exit 1; done
d=\${1%/cgroup.procs}
mkdir "$d/ctr" || exit 1
sleep 1000 & echo $! > "$d/ctr/cgroup.procs" || exit 1
echo "$$ $!"
exec sleep 1000`;
  const child = spawn('/bin/sh', ['-c', script, 'joiner', ...procsFiles], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { child, pids: line.toString().trim().split(' ').map(Number) };
}

async function exercise(driver: CgroupDriver, id: string): Promise<void> {
  const cg = await driver.create(cgroupOwner(id, incarnation()), {});
  const { child, pids } = await joiner(cg.procsFiles);
  const exited = once(child, 'exit');
  try {
    expect((await cg.pids()).sort()).toEqual([...pids].sort());
    for (const pid of pids) expect(await readFile(`/proc/${pid}/cgroup`, 'utf8')).toMatch(sandboxCgroupPattern(id));
    expect((await sandboxCgroupDirs(id)).sort()).toEqual([...cg.dirs].sort());

    // What the kernel says: v1 shows frozen tasks in uninterruptible sleep; v2 reports the
    // frozen state of the cgroup in cgroup.events.
    const states = () => Promise.all(pids.map(async (p) => (await readFile(`/proc/${p}/status`, 'utf8')).match(/^State:\s+(\S)/m)?.[1]));
    const frozenV2 = async () => /^frozen 1$/m.test(await readFile(join(cg.dirs[0]!, 'cgroup.events'), 'utf8'));
    await cg.freeze();
    // v1: every task in uninterruptible sleep; v2: the cgroup says frozen.
    expect(driver.version === 1 ? await states() : await frozenV2()).toEqual(driver.version === 1 ? pids.map(() => 'D') : true);
    await cg.thaw();
    // Woken tasks leave D once they have been scheduled again.
    if (driver.version === 1) await waitFor(async () => ((await states()).every((x) => x === 'S') ? true : undefined), 'the tasks to thaw');
    else expect(await frozenV2()).toBe(false);

    await cg.destroy();
    expect(await exited).toEqual([null, 'SIGKILL']);
    for (const pid of pids) expect(alive(pid)).toBe(false);
    for (const dir of cg.dirs) expect(await readFile(join(dir, 'cgroup.procs'), 'utf8').catch((e: NodeJS.ErrnoException) => e.code)).toBe('ENOENT');
    expect(await sandboxCgroupDirs(id)).toEqual([]);
  } finally {
    if (alive(pids[0]!)) {
      child.kill('SIGKILL');
      await cg.destroy().catch(() => {});
    }
  }
}

// Writing cgroups needs root (CI runs as root); as another user these cannot run at all.
describe.skipIf(!isRoot)('cgroup drivers on this host', async () => {
  const host = await readHostCgroups();
  const hostDriver = chooseCgroupDriver(host, quietLog);

  it.skipIf(!hostDriver)("the host's driver groups, freezes, kills and removes a sandbox and its child cgroups", async () => {
    await exercise(hostDriver!, sandboxId('cg-host'));
  });

  const v2 = host.v2;
  const v2Usable = !!v2?.writable && host.v1.length > 0 && v2.own === v2.mount;
  let subtreeBefore: string | undefined;
  afterAll(async () => {
    // Put back the root's controller delegation as it was.
    if (subtreeBefore === undefined || !v2) return;
    const now = (await readFile(join(v2.mount, 'cgroup.subtree_control'), 'utf8')).trim().split(/\s+/).filter(Boolean);
    const before = new Set(subtreeBefore.split(/\s+/).filter(Boolean));
    const added = now.filter((c) => !before.has(c));
    if (added.length > 0) await writeFile(join(v2.mount, 'cgroup.subtree_control'), added.map((c) => `-${c}`).join(' ')).catch(() => {});
  });

  // On a hybrid host the unified tree is otherwise unused, so the v2 driver can be tried there too.
  it.skipIf(!v2Usable)('the v2 driver does the same in the unified hierarchy', async () => {
    subtreeBefore = (await readFile(join(v2!.mount, 'cgroup.subtree_control'), 'utf8')).trim();
    await exercise(new CgroupV2Driver(v2!, quietLog), sandboxId('cg-v2'));
  });

  it.skipIf(!hostDriver)('names the cgroup after the host and the incarnation: two runtimes (or two incarnations) of one sandbox id never touch each other', async () => {
    const id = sandboxId('cg-two');
    const mine = await hostDriver!.create(cgroupOwner(id, incarnation()), {});
    const again = await hostDriver!.create(cgroupOwner(id, incarnation()), {});
    const theirs = await hostDriver!.create(cgroupOwner(id, { host: `${TEST_HOST}-other`, uid: incarnation().uid }), {});
    const others = [again, theirs];
    const joined = await Promise.all(others.map((cg) => joiner(cg.procsFiles)));
    try {
      const dirs = [mine, ...others].flatMap((cg) => cg.dirs);
      expect(new Set(dirs).size).toBe(dirs.length);
      expect((await sandboxCgroupDirs(id)).sort()).toEqual([...dirs].sort());
      await mine.destroy();
      for (const { pids } of joined) for (const pid of pids) expect(alive(pid)).toBe(true);
      expect((await sandboxCgroupDirs(id)).sort()).toEqual(others.flatMap((cg) => cg.dirs).sort());
    } finally {
      for (const cg of others) await cg.destroy();
    }
    expect(await sandboxCgroupDirs(id)).toEqual([]);
  });

  it.skipIf(!hostDriver)('refuses to name or touch a directory that is not a sandbox cgroup', async () => {
    const bad = [
      { host: '..', sandboxId: 'x', incarnation: 'ab' },
      { host: 'h', sandboxId: '../..', incarnation: 'ab' },
      { host: 'h', sandboxId: 'x', incarnation: '../..' },
      { host: 'h.i', sandboxId: 'x', incarnation: 'ab' },
    ];
    for (const owner of bad) expect(() => hostDriver!.open(owner), JSON.stringify(owner)).toThrow(/cannot name a cgroup/);
  });
});
