// OCI bundles: a config.json (as `runc spec` writes one) over a busybox rootfs, handed
// over with --bundle, runs in a kata sandbox with its process, root, hostname and limits.
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { busyboxRootfs } from '../helpers/rootfs.js';
import { useRuntime } from '../helpers/runtime.js';
import { runCli } from '../helpers/cli.js';

const rt = useRuntime({ host: 'bundle-host' });

const cli = (...rest: string[]) => runCli(rt.server, ...rest);

/** A bundle directory with config.json; its rootfs beside it, named by a relative root.path. */
function bundle(config: Record<string, unknown>): { dir: string; rootfs: string } {
  const rootfs = busyboxRootfs('from-the-bundle', ['sh', 'cat', 'hostname', 'echo', 'pwd', 'sleep']);
  const dir = mkdtempSync(join(tmpdir(), 'vc-bundle-'));
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', root: { path: relative(dir, rootfs), readonly: false }, ...config }));
  return { dir, rootfs };
}

// The mounts `runc spec` lists: the kernel filesystems every container gets.
const RUNC_MOUNTS = [
  { destination: '/proc', type: 'proc', source: 'proc' },
  { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
  { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
  { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
  { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
  { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
  { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
];

describe('OCI bundles', { timeout: 120_000 }, () => {
  it('container create --bundle runs the process of config.json in its root, with its hostname, env, cwd and limits', async () => {
    const { dir, rootfs } = bundle({
      process: { terminal: false, user: { uid: 0, gid: 0 }, args: ['sh', '-c', 'cat /marker; echo; hostname; echo $GREETING; pwd'], env: ['PATH=/bin', 'GREETING=hi'], cwd: '/bin' },
      hostname: 'bundled',
      mounts: RUNC_MOUNTS,
      linux: { resources: { memory: { limit: 64 * 1024 ** 2 }, pids: { limit: 50 } } },
    });
    await rt.ok('SandboxCreate', {}, { sandbox: { id: 'b1', agent: 'kata' }, start: true });
    const created = await cli('--json', 'container', 'create', 'b1', 'c1', '--bundle', dir);
    expect(created.stderr).toBe('');
    const status = JSON.parse(created.stdout);
    expect(status.spec).toMatchObject({
      args: ['sh', '-c', 'cat /marker; echo; hostname; echo $GREETING; pwd'], env: ['PATH=/bin', 'GREETING=hi'], cwd: '/bin', user: '0:0',
      rootfs, hostname: 'bundled', resources: { memoryLimitBytes: 64 * 1024 ** 2, pidsLimit: 50 },
    });
    await rt.ok('ContainerStart', { sid: 'b1', cid: 'c1' });
    expect(await rt.ok('ContainerWait', { sid: 'b1', cid: 'c1' }, { timeoutMs: 30_000 })).toMatchObject({ exitStatus: 0 });
    expect((await rt.ok('ContainerLogs', { sid: 'b1', cid: 'c1' })).stdout).toBe('from-the-bundle\nbundled\nhi\n/bin\n');

    // run takes a bundle too, and a command after it replaces process.args.
    const run = await cli('run', '--sandbox', 'b1', '--name', 'c2', '--rm', '--bundle', dir, '--', 'cat', '/marker');
    expect(run).toEqual({ code: 0, stdout: 'from-the-bundle', stderr: '' });
    await rt.ok('SandboxDelete', { sid: 'b1' }, { force: true });
  });

  it('refuses a bundle mount of a host path, and says what is wrong with a bundle', async () => {
    await rt.ok('SandboxCreate', {}, { sandbox: { id: 'b2' } });
    const { dir } = bundle({ process: { args: ['true'] }, mounts: [...RUNC_MOUNTS, { destination: '/data', type: 'bind', source: '/etc', options: ['rbind'] }] });
    const bind = await cli('container', 'create', 'b2', 'c1', '--bundle', dir);
    expect(bind.code).toBe(1);
    expect(bind.stderr).toMatch(/InvalidArgument: container.mounts\[7\]: bind mount of "\/etc" on "\/data" is refused/);

    const empty = mkdtempSync(join(tmpdir(), 'vc-bundle-'));
    const none = await cli('container', 'create', 'b2', 'c1', '--bundle', empty);
    expect(none.code).toBe(1);
    expect(none.stderr).toBe(`virtactors: ${join(empty, 'config.json')} does not exist: an OCI bundle has its config.json at its top\n`);
    writeFileSync(join(empty, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', process: { cwd: '/' } }));
    const noArgs = await cli('container', 'create', 'b2', 'c1', '--bundle', empty);
    expect(noArgs.code).toBe(2);
    expect(noArgs.stderr).toMatch(/a container needs a command/);
    await rt.ok('SandboxDelete', { sid: 'b2' }, { force: true });
  });

  it('the hyperstart agent refuses per-container limits and hostnames rather than dropping them', async () => {
    await rt.ok('SandboxCreate', {}, { sandbox: { id: 'b3', agent: 'hyperstart' }, start: true });
    const limited = await cli('container', 'create', 'b3', 'c1', '-m', '32m', '--', 'true');
    expect(limited.code).toBe(1);
    expect(limited.stderr).toMatch(/Unimplemented: container c1 not created: the hyperstart protocol has no per-container resources/);
    const { dir } = bundle({ process: { args: ['true'] }, hostname: 'bundled' });
    const named = await cli('container', 'create', 'b3', 'c2', '--bundle', dir);
    expect(named.stderr).toMatch(/Unimplemented: container c2 not created: the hyperstart protocol has no per-container hostname/);
    await rt.ok('SandboxDelete', { sid: 'b3' }, { force: true });
  });
});
