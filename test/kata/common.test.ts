// Pieces of guest/common that decide what runs where: paths inside a root, users, the
// wrapper chain around a process, ps filtering, and output held for pulling readers.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findExecutable, resolveInRoot } from '../../guest/common/paths.js';
import { parseUser, resolveUser } from '../../guest/common/user.js';
import { planLaunch } from '../../guest/common/process.js';
import { filterPsTable } from '../../guest/common/supervisor.js';
import { OutputBuffer } from '../../guest/common/output-buffer.js';
import { GuestError } from '../../guest/common/errors.js';

let root: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'kata-common-'));
  mkdirSync(join(root, 'bin'));
  mkdirSync(join(root, 'etc'));
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  writeFileSync(join(root, 'bin/busybox'), '#!/bin/true\n');
  chmodSync(join(root, 'bin/busybox'), 0o755);
  symlinkSync('/bin/busybox', join(root, 'usr/bin/sh')); // absolute: must stay inside the root
  symlinkSync('../../bin', join(root, 'usr/bin/up')); // relative, climbing
  symlinkSync('/../../../../etc', join(root, 'escape')); // tries to leave the root
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\nstaff:x:50:\napp:x:1001:\n');
});

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('paths inside a root', () => {
  it('follows symlinks within the root, never out of it', () => {
    expect(resolveInRoot(root, '/usr/bin/sh')).toBe(`${root}/bin/busybox`);
    expect(resolveInRoot(root, '/usr/bin/up/busybox')).toBe(`${root}/bin/busybox`);
    expect(resolveInRoot(root, '/escape/passwd')).toBe(`${root}/etc/passwd`);
    expect(resolveInRoot(root, '/../../etc/passwd')).toBe(`${root}/etc/passwd`);
    expect(resolveInRoot('', '/usr/bin/sh')).toBe('/usr/bin/sh');
  });

  it('finds a program in the spec PATH as the container sees it', () => {
    expect(findExecutable('sh', ['PATH=/usr/bin'], root, '/')).toBe('/usr/bin/sh');
    expect(findExecutable('busybox', [], root, '/')).toBe('/bin/busybox'); // default PATH
    expect(findExecutable('./busybox', [], root, '/bin')).toBe('/bin/busybox');
    expect(() => findExecutable('bash', ['PATH=/usr/bin:/bin'], root, '/')).toThrow(/bash: executable file not found in \$PATH/);
    expect(() => findExecutable('/etc/passwd', [], root, '/')).toThrow(GuestError);
  });
});

describe('users', () => {
  it('parses uid[:gid] and names', () => {
    expect(parseUser('')).toEqual({});
    expect(parseUser('1000')).toEqual({ uid: 1000 });
    expect(parseUser('1000:50')).toEqual({ uid: 1000, gid: 50 });
    expect(parseUser('app:staff')).toEqual({ name: 'app', group: 'staff' });
  });

  it("resolves names in the container's own /etc/passwd and /etc/group", () => {
    expect(resolveUser(parseUser('app'), root)).toEqual({ uid: 1000, gid: 1001, additionalGids: [] });
    expect(resolveUser(parseUser('app:staff'), root)).toEqual({ uid: 1000, gid: 50, additionalGids: [] });
    expect(resolveUser(parseUser('1000'), root)).toEqual({ uid: 1000, gid: 1001, additionalGids: [] });
    expect(resolveUser(parseUser('4242'), root)).toEqual({ uid: 4242, gid: 0, additionalGids: [] });
    expect(() => resolveUser(parseUser('nobody-here'), root)).toThrow(/user nobody-here is not in \/etc\/passwd/);
  });
});

describe('the wrapper chain around a process', () => {
  const spec = { args: ['sh', '-c', 'echo hi'], env: ['A=1'], cwd: '/work' };

  it('runs a plain process directly, with node setting the user', () => {
    const plan = planLaunch(spec, { root: '', cgroupProcs: [] }, '/bin/sh', { uid: 1000, gid: 1000, additionalGids: [] });
    expect(plan.argv).toEqual(['/bin/sh', '-c', 'echo hi']);
    expect(plan).toMatchObject({ cwd: '/work', ids: { uid: 1000, gid: 1000 }, forks: 0, env: { A: '1' } });
  });

  it('joins cgroups first, then chroots with unshare (same pid)', () => {
    const plan = planLaunch(spec, { root: '/r', cgroupProcs: ['/cg/a/cgroup.procs', '/cg/b/cgroup.procs'] }, '/bin/sh', { uid: 7, gid: 8, additionalGids: [] });
    const sh = plan.argv.indexOf('--');
    expect(plan.argv.slice(3, sh)).toEqual(['va-join', '/cg/a/cgroup.procs', '/cg/b/cgroup.procs']);
    expect(plan.argv.slice(sh + 1)).toEqual([expect.stringMatching(/unshare$/), '--root=/r', '--wd=/work', '--setgid=8', '--setuid=7', '--', '/bin/sh', '-c', 'echo hi']);
    expect(plan).toMatchObject({ cwd: '/', forks: 0, joins: '/cg/b/cgroup.procs' });
    expect(plan.ids).toBeUndefined();
  });

  it('enters the reaper namespace with nsenter (one fork) and a terminal with script (another)', () => {
    const plan = planLaunch({ ...spec, terminal: true, consoleSize: { rows: 30, cols: 100 } }, { root: '/r', reaperPid: 42, cgroupProcs: [] }, '/bin/sh', undefined);
    expect(plan.argv[0]).toMatch(/script$/);
    expect(plan.argv.slice(1, 5)).toEqual(['-q', '-e', '-f', '-c']);
    const command = plan.argv[5]!;
    expect(command).toMatch(/stty' rows 30 cols 100 2>\/dev\/null; unset SHELL; exec '.*nsenter' '--target=42' '--pid' '--root=\/r' '--wdns=\/work' '--' '\/bin\/sh' '-c' 'echo hi'$/);
    expect(plan.forks).toBe(2);
    expect(plan.env.SHELL).toMatch(/\/sh$/);
  });
});

describe('ps tables', () => {
  it('keeps the header and the lines of the given pids', () => {
    const out = 'UID PID PPID CMD\nroot 1 0 init\nroot 12 1 sleep 60\nroot 120 1 other\n';
    expect(filterPsTable(out, new Set([12]))).toBe('UID PID PPID CMD\nroot 12 1 sleep 60\n');
    expect(() => filterPsTable('USER COMMAND\nroot x\n', new Set([1]))).toThrow(/no PID column/);
  });
});

describe('output held for readers', () => {
  it('blocks a read until data, splits by length, and ends with an empty read', async () => {
    const source = new PassThrough();
    const buf = new OutputBuffer();
    buf.attach(source);
    const pending = buf.read(3);
    source.write('hello');
    expect(Buffer.from(await pending).toString()).toBe('hel');
    expect(Buffer.from(await buf.read(10)).toString()).toBe('lo');
    source.end();
    expect((await buf.read(10)).length).toBe(0);
    expect(buf.finished).toBe(true);
  });

  it('keeps data for the next reader when a read is cancelled', async () => {
    const source = new PassThrough();
    const buf = new OutputBuffer();
    buf.attach(source);
    const abort = new AbortController();
    const cancelled = buf.read(10, abort.signal);
    abort.abort(new Error('gone'));
    await expect(cancelled).rejects.toThrow('gone');
    source.write('kept');
    expect(Buffer.from(await buf.read(10)).toString()).toBe('kept');
  });

  it('pauses the source past its high-water mark', async () => {
    const source = new PassThrough();
    const buf = new OutputBuffer(8);
    buf.attach(source);
    source.write('0123456789');
    await new Promise((r) => setImmediate(r));
    expect(source.isPaused()).toBe(true);
    expect(Buffer.from(await buf.read(100)).toString()).toBe('0123456789');
    expect(source.isPaused()).toBe(false);
  });
});
