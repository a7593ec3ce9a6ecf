// The namespace backend against the real kernel: namespaces, /proc, loopback, cgroups,
// exit reporting and clean-up.
import { execFileSync } from 'node:child_process';
import { readFile, readlink, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NamespaceBackend, type NamespaceBackendOptions } from '../../actors/backends/namespace.js';
import { hostCgroupDriver, LimitAnnotation } from '../../actors/backends/cgroups/index.js';
import { DEFAULT_USERNS_BASE, USERNS_SIZE } from '../../actors/backends/userns.js';
import { VcError } from '../../bus/errors.js';
import {
  alive,
  cgroupOwner,
  hostMounts,
  incarnation,
  isRoot,
  nextExit,
  plan,
  quietLog,
  readIfExists,
  sandboxCgroupDirs,
  sandboxCgroupPattern,
  sandboxId,
  sandboxProcesses,
  spec,
  tempDir,
  waitFor,
  writeScript,
} from './helpers.js';

let tmp: { dir: string; remove: () => Promise<void> };
let reporter: string;

// Writes what the guest sees from inside, starts a process in a child cgroup of its own
// (as a guest agent does for a container), and stops on SIGTERM.
const REPORTER = `report=$1
{
  echo "hostname=$(cat /proc/sys/kernel/hostname)"
  echo "self=$$"
  echo "pid1=$(tr '\\0' ' ' < /proc/1/cmdline)"
  pids=""; for d in /proc/[0-9]*; do pids="$pids \${d#/proc/}"; done
  echo "pids=$pids"
  echo "links=$(ip -o link show | awk -F': ' '{print $2}' | tr '\\n' ' ')"
  echo "lo=$(ip -o link show lo)"
} > "$report.tmp"
cg=/sys/fs/cgroup/pids$(sed -n 's/^[0-9]*:pids://p' /proc/self/cgroup)
sleep 1000 &
if [ -d "$cg" ] && mkdir "$cg/ctr" && echo $! > "$cg/ctr/cgroup.procs"; then echo "ctr=$cg/ctr" >> "$report.tmp"; fi
trap 'echo term > "$report.term"; exit 0' TERM
sleep 1000 & s=$!
mv "$report.tmp" "$report"
while :; do wait $s; sleep 1000 & s=$!; done`;

function parseReport(text: string): Record<string, string> {
  return Object.fromEntries(text.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

beforeAll(async () => {
  tmp = await tempDir('ns');
  reporter = await writeScript(tmp.dir, 'reporter.sh', REPORTER);
});

afterAll(async () => {
  await tmp?.remove();
});

// Every backend a test creates is shut down afterwards, even when an assertion failed.
const started: NamespaceBackend[] = [];
function backend(graceMs = 2000, options: Partial<NamespaceBackendOptions> = {}): NamespaceBackend {
  const b = new NamespaceBackend({ log: quietLog, graceMs, ...options });
  started.push(b);
  return b;
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((b) => b.shutdown()));
});

// Creating namespaces needs root (CI runs as root); the process backend covers other users.
describe.skipIf(!isRoot)('namespace backend', () => {
  it('runs the guest as PID 1 with its own hostname, /proc, loopback and cgroup, and removes all of it at shutdown', async () => {
    const id = sandboxId('ns-full');
    const runDir = join(tmp.dir, id);
    const report = join(runDir, 'report');
    const mountsBefore = await hostMounts();
    const b = backend();
    const { exits } = nextExit(b);
    const inc = incarnation();

    await b.boot({ incarnation: inc, sandbox: spec(id), runDir, plan: plan(['/bin/sh', reporter, report]) });
    const pid = b.pid!;
    expect(pid).toBeGreaterThan(0);
    expect((await readFile(join(runDir, 'guest.pid'), 'utf8')).trim()).toBe(String(pid));

    const seen = parseReport(await waitFor(() => readIfExists(report), 'the guest report'));
    expect(seen.hostname).toBe(`${id}-host`);
    expect(seen.self).toBe('1');
    expect(seen.pid1).toBe(`/bin/sh ${reporter} ${report} `);
    // The guest listed /proc with a glob, in its own process: only PID 1 can be there.
    expect(seen.pids!.trim().split(' ')).toEqual(['1']);
    expect(seen.links!.trim().split(' ')).toEqual(['lo']);
    expect(seen.lo).toMatch(/<[^>]*\bUP\b[^>]*>/);
    const hostLinks = Object.keys(networkInterfaces()).filter((n) => n !== 'lo');
    for (const name of hostLinks) expect(seen.links).not.toContain(name);

    // Nothing the namespace mounted shows on the host.
    expect(await hostMounts()).toBe(mountsBefore);

    // Besides the waiter outside it (PID 1's parent), everything marked as the sandbox's is
    // in its pid namespace and in its cgroup.
    const pidns = await readlink(`/proc/${pid}/ns/pid`);
    const waiter = Number((await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')[1]);
    const members = (await sandboxProcesses(id)).filter((p) => p !== waiter);
    expect(members).toContain(pid);
    expect(members.length).toBeGreaterThanOrEqual(3);
    // Root on the hosts this runs on (CI included) has writable cgroups; the guest gets one.
    expect(await hostCgroupDriver(quietLog), 'writable cgroups on this host').toBeDefined();
    for (const p of members) {
      expect(await readlink(`/proc/${p}/ns/pid`)).toBe(pidns);
      expect(await readFile(`/proc/${p}/cgroup`, 'utf8')).toMatch(sandboxCgroupPattern(id));
    }
    expect(seen.ctr).toBeDefined();
    // The leftover check below finds the sandbox's cgroups while they exist.
    const driver = await hostCgroupDriver(quietLog);
    expect((await sandboxCgroupDirs(id)).sort()).toEqual([...driver!.open(cgroupOwner(id, inc)).dirs].sort());

    await b.shutdown();
    expect(await readIfExists(`${report}.term`)).toBe('term\n');
    expect(alive(pid)).toBe(false);
    expect(await sandboxProcesses(id)).toEqual([]);
    expect(await sandboxCgroupDirs(id)).toEqual([]);
    expect(await hostMounts()).toBe(mountsBefore);
    expect(await readIfExists(join(runDir, 'guest.pid'))).toBeUndefined();
    expect((await stat(join(runDir, 'guest.log'))).isFile()).toBe(true);
    expect(b.pid).toBeUndefined();
    expect(exits).toEqual([]);
  });

  it('runs the guest in a user namespace whose root is an unprivileged host range, and without one when the host turns it off', async () => {
    const setting = { enabled: true, base: DEFAULT_USERNS_BASE, size: USERNS_SIZE };
    const on = backend(2000, { userns: setting });
    const off = backend(2000, { userns: { ...setting, enabled: false } });
    const [idOn, idOff] = [sandboxId('ns-userns'), sandboxId('ns-nouserns')];
    await on.boot({ incarnation: incarnation(), sandbox: spec(idOn), runDir: join(tmp.dir, idOn), plan: plan(['/bin/sleep', '1000']) });
    await off.boot({ incarnation: incarnation(), sandbox: spec(idOff), runDir: join(tmp.dir, idOff), plan: plan(['/bin/sleep', '1000']) });
    expect(on.userNamespace).toBe(true);
    expect((await readFile(`/proc/${on.pid}/uid_map`, 'utf8')).trim().split(/\s+/)).toEqual(['0', String(DEFAULT_USERNS_BASE), String(USERNS_SIZE)]);
    expect((await readFile(`/proc/${on.pid}/gid_map`, 'utf8')).trim().split(/\s+/)).toEqual(['0', String(DEFAULT_USERNS_BASE), String(USERNS_SIZE)]);
    // Root inside, nobody outside: the host sees the guest as the first id of the range.
    expect(await readFile(`/proc/${on.pid}/status`, 'utf8')).toMatch(new RegExp(`^Uid:\\s+${DEFAULT_USERNS_BASE}\\s`, 'm'));
    expect((await stat(join(tmp.dir, idOn))).uid).toBe(DEFAULT_USERNS_BASE);
    expect(off.userNamespace).toBe(false);
    expect(await readlink(`/proc/${off.pid}/ns/user`)).toBe(await readlink('/proc/self/ns/user'));
    expect(await readFile(`/proc/${off.pid}/status`, 'utf8')).toMatch(/^Uid:\s+0\s/m);
    // Each gets its hostname: by sethostname(2) inside the user namespace (its root may not
    // write /proc/sys/kernel/hostname), through that file without one.
    const hostnameOf = (pid: number | undefined) => execFileSync('nsenter', [`--target=${pid}`, '--uts', 'cat', '/proc/sys/kernel/hostname'], { encoding: 'utf8' }).trim();
    expect(hostnameOf(on.pid)).toBe(`${idOn}-host`);
    expect(hostnameOf(off.pid)).toBe(`${idOff}-host`);
  });

  it('reports the exit status of a guest that exits on its own, once', async () => {
    const id = sandboxId('ns-exit');
    const b = backend();
    const { exits, first } = nextExit(b);
    await b.boot({ incarnation: incarnation(), sandbox: spec(id), runDir: join(tmp.dir, id), plan: plan(['/bin/sh', '-c', 'exit 7']) });
    const exit = await first;
    expect(exit.status).toBe(7);
    expect(exit.signal).toBeUndefined();
    await b.shutdown();
    expect(exits).toHaveLength(1);
    expect(await sandboxCgroupDirs(id)).toEqual([]);
  });

  it('reports a guest killed from outside as 137 / SIGKILL, and cleans up after it', async () => {
    const id = sandboxId('ns-kill');
    const b = backend();
    const { exits, first } = nextExit(b);
    await b.boot({ incarnation: incarnation(), sandbox: spec(id), runDir: join(tmp.dir, id), plan: plan(['/bin/sh', '-c', 'sleep 1000 & exec sleep 1000']) });
    process.kill(b.pid!, 'SIGKILL');
    expect(await first).toMatchObject({ status: 137, signal: 'SIGKILL' });
    // PID 1 took the rest of its namespace with it.
    expect(await sandboxProcesses(id)).toEqual([]);
    await b.shutdown();
    expect(exits).toHaveLength(1);
    expect(await sandboxCgroupDirs(id)).toEqual([]);
  });

  it('ends the guest with its waiter when the waiter alone is killed', async () => {
    const id = sandboxId('ns-waiter');
    const b = backend();
    const { first } = nextExit(b);
    await b.boot({ incarnation: incarnation(), sandbox: spec(id), runDir: join(tmp.dir, id), plan: plan(['/bin/sh', '-c', 'sleep 1000 & exec sleep 1000']) });
    const pid = b.pid!;
    const waiter = Number((await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')[1]);
    process.kill(waiter, 'SIGKILL');
    expect(await first).toMatchObject({ status: 137, signal: 'SIGKILL' });
    await waitFor(() => (alive(pid) ? undefined : true), 'PID 1 to go with its waiter');
    await b.shutdown();
    expect(await sandboxProcesses(id)).toEqual([]);
    expect(await sandboxCgroupDirs(id)).toEqual([]);
  });

  it('kills a guest that does not stop within the grace period; shutdown is idempotent and silent', async () => {
    const id = sandboxId('ns-stubborn');
    const b = backend(100);
    const { exits } = nextExit(b);
    const stubborn = 'trap "echo ignored" TERM; while :; do sleep 1000 & wait $!; done';
    await b.boot({ incarnation: incarnation(), sandbox: spec(id), runDir: join(tmp.dir, id), plan: plan(['/bin/sh', '-c', stubborn]) });
    const pid = b.pid!;
    await Promise.all([b.shutdown(), b.shutdown()]);
    await b.shutdown();
    expect(alive(pid)).toBe(false);
    expect(await sandboxProcesses(id)).toEqual([]);
    expect(exits).toEqual([]);
  });

  it('boots again after a shutdown, as a stopped sandbox that starts again does', async () => {
    const id = sandboxId('ns-again');
    const b = backend();
    const runDir = join(tmp.dir, id);
    await b.boot({ incarnation: incarnation(), sandbox: spec(id), runDir, plan: plan(['/bin/sleep', '1000']) });
    const first = b.pid!;
    await b.shutdown();
    await b.boot({ incarnation: incarnation(), sandbox: spec(id), runDir, plan: plan(['/bin/sleep', '1000']) });
    expect(b.pid).not.toBe(first);
    expect(alive(b.pid!)).toBe(true);
    await expect(b.boot({ incarnation: incarnation(), sandbox: spec(id), runDir, plan: plan(['/bin/sleep', '1000']) })).rejects.toThrow(/already running/);
    await b.shutdown();
    expect(await sandboxProcesses(id)).toEqual([]);
  });

  it('removes the unix sockets of the endpoint at shutdown, reachable from the host while it runs', async () => {
    const id = sandboxId('ns-sock');
    const runDir = join(tmp.dir, id);
    const socket = join(runDir, 'agent.sock');
    const b = backend(100);
    const listen = `require('net').createServer((c) => c.end('hi')).listen(${JSON.stringify(socket)})`;
    const endpoint = { grpcAddress: `unix://${socket}` };
    expect(await b.boot({ incarnation: incarnation(), sandbox: spec(id), runDir, plan: { ...plan([process.execPath, '-e', listen]), endpoint } })).toEqual(endpoint);
    const answer = await waitFor(
      () =>
        new Promise<string | undefined>((resolve) => {
          const c = connect(socket);
          let data = '';
          c.on('data', (d) => (data += d.toString()));
          c.on('end', () => resolve(data));
          c.on('error', () => resolve(undefined));
        }),
      'the guest to listen',
    );
    expect(answer).toBe('hi');
    await b.shutdown();
    expect(await stat(socket).then(() => 'present', (e: NodeJS.ErrnoException) => e.code)).toBe('ENOENT');
  });

  it('applies limits from annotations to the sandbox cgroup', async (ctx) => {
    const driver = await hostCgroupDriver(quietLog);
    if (!driver) ctx.skip();
    const id = sandboxId('ns-limits');
    const annotations = { [LimitAnnotation.memory]: '64Mi', [LimitAnnotation.pids]: '50', [LimitAnnotation.cpus]: '0.5' };
    const b = backend();
    const inc = incarnation();
    await b.boot({ incarnation: inc, sandbox: spec(id, { annotations }), runDir: join(tmp.dir, id), plan: plan(['/bin/sleep', '1000']) });
    try {
      const files: Record<string, string> = {};
      for (const dir of driver!.open(cgroupOwner(id, inc)).dirs) {
        for (const f of ['memory.limit_in_bytes', 'memory.max', 'pids.max', 'cpu.cfs_quota_us', 'cpu.max']) {
          const v = await readIfExists(join(dir, f));
          if (v !== undefined) files[f] = v.trim();
        }
      }
      expect(files['memory.limit_in_bytes'] ?? files['memory.max']).toBe(String(64 * 1024 * 1024));
      expect(files['pids.max']).toBe('50');
      expect(files['cpu.cfs_quota_us'] ?? files['cpu.max']?.split(' ')[0]).toBe('50000');
    } finally {
      await b.shutdown();
    }
    expect(await sandboxCgroupDirs(id)).toEqual([]);
  });

  it('rejects a bad plan or annotation before starting anything', async () => {
    const id = sandboxId('ns-bad');
    const runDir = join(tmp.dir, id);
    const b = backend();
    const cases = [
      { sandbox: spec(id), plan: plan(['/no/such/guest']) },
      { sandbox: spec(id), plan: plan([]) },
      { sandbox: spec(id, { annotations: { [LimitAnnotation.memory]: 'lots' } }), plan: plan(['/bin/sleep', '1']) },
      { sandbox: spec(id, { hostname: 'h'.repeat(65) }), plan: plan(['/bin/sleep', '1']) },
      { sandbox: spec(id), plan: { ...plan(['/bin/sleep', '1']), endpoint: { grpcAddress: '127.0.0.1:1234' } } },
    ];
    for (const c of cases) {
      const err = await b.boot({ ...c, incarnation: incarnation(), runDir }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VcError);
      expect((err as VcError).code).toBe('InvalidArgument');
      expect(b.pid).toBeUndefined();
    }
    expect(await sandboxCgroupDirs(id)).toEqual([]);
    expect(await sandboxProcesses(id)).toEqual([]);
  });

  it('fails the boot with the guest log when the prelude cannot run', async () => {
    const id = sandboxId('ns-prelude');
    const b = backend(2000, {
      // A cgroup whose procs file cannot be written: the prelude stops before the guest.
      cgroups: async () => ({
        version: 2,
        open: () => {
          throw new Error('unused');
        },
        create: async () => ({
          dirs: [],
          memoryDir: undefined,
          version: 2 as const,
          procsFiles: ['/proc/version'],
          pids: async () => [],
          freeze: async () => {},
          thaw: async () => {},
          delegate: () => {},
          destroy: async () => {},
        }),
      }),
    });
    const { exits } = nextExit(b);
    await expect(b.boot({ incarnation: incarnation(), sandbox: spec(id), runDir: join(tmp.dir, id), plan: plan(['/bin/sleep', '1000']) })).rejects.toThrow(/did not start: .*echo/s);
    expect(exits).toEqual([]);
    expect(await sandboxProcesses(id)).toEqual([]);
  });
});
