// Escape probes: what a hostile client on the bus, and a hostile workload inside a real
// container, try in order to reach the host. Each try is a test of its own, and each must
// fail to escape: a request is refused with a stable code and the host file it aimed at is
// untouched; a workload's system call is refused, or finds nothing of the host to act on.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, startTestHost, useRuntime } from '../helpers/runtime.js';
import { startTestServer } from '../helpers/nats.js';
import { sandboxProcesses } from '../helpers/processes.js';
import { DEFAULT_USERNS_BASE } from '../../actors/backends/userns.js';
import { GUEST_AGENTS } from './agents.js';

const rt = useRuntime({ host: 'escape' });
let victimDir: string;

beforeAll(() => {
  victimDir = mkdtempSync(join(tmpdir(), 'vc-victim-'));
});

afterAll(() => {
  if (victimDir) rmSync(victimDir, { recursive: true, force: true });
});

/** A host file that must survive the probe. */
function victim(name: string): { path: string; intact: () => boolean } {
  const path = join(victimDir, name);
  writeFileSync(path, `do not delete ${name}\n`);
  return { path, intact: () => existsSync(path) && readFileSync(path, 'utf8') === `do not delete ${name}\n` };
}

const socketFields = { kata: ['grpcSocket'], hyperstart: ['sockCtlName', 'sockTtyName'] } as const;

for (const agent of GUEST_AGENTS) {
  describe(`${agent}: a client cannot make the runtime unlink a host file through agent configuration`, () => {
    let n = 0;
    for (const field of socketFields[agent]) {
      for (const form of ['absolute', 'relative'] as const) {
        it(`${field} as an ${form} path`, async () => {
          const file = victim(`${agent}-${field}-${form}`);
          // The relative form walks up from the runtime's working directory, where a path would have been resolved.
          const value = form === 'absolute' ? file.path : relative(process.cwd(), file.path);
          expect(value.startsWith(form === 'absolute' ? '/' : '..')).toBe(true);
          const id = `esc-${agent.slice(0, 4)}-${++n}`;
          const reply = await rt.client.request('SandboxCreate', {}, {
            sandbox: { id, agent, backend: 'namespace', agentConfig: { [field]: value } },
            start: true,
          });
          expect(reply.ok).toBe(false);
          expect(reply.error?.code).toBe('InvalidArgument');
          expect(reply.error?.message).toMatch(new RegExp(`${field} .* is not a socket name`));
          expect(file.intact()).toBe(true);
          // Nothing was created either.
          expect((await rt.client.request('SandboxStatus', { sid: id })).error?.code).toBe('NotFound');
        });
      }
    }
  });

  describe(`${agent}: a client cannot give a container the host's root`, () => {
    let sid: string;
    beforeAll(async () => {
      sid = `esc-root-${agent.slice(0, 4)}`;
      await rt.ok('SandboxCreate', {}, { sandbox: { id: sid, agent, backend: 'namespace' }, start: true });
    });
    afterAll(async () => {
      await rt.client.request('SandboxDelete', { sid: sid }, { force: true });
    });

    for (const [name, rootfs, message] of [
      ['/', '/', /is the host's root/],
      ['..', '..', /is not an absolute path/],
      ['../../', '../../', /is not an absolute path/],
      ['/tmp/../..', '/tmp/../..', /is the host's root/],
      ['a symlink to /', '/proc/self/root', /is the host's root/],
    ] as const) {
      it(`rootfs ${name}`, async () => {
        const reply = await rt.client.request('ContainerCreate', { sid: sid }, { container: { id: 'c', args: ['true'], rootfs } });
        expect(reply.ok).toBe(false);
        expect(reply.error?.code).toBe('InvalidArgument');
        expect(reply.error?.message).toMatch(message);
        expect((await rt.client.request('ContainerStatus', { sid: sid, cid: 'c' })).error?.code).toBe('NotFound');
      });
    }

    it("rootfs around the runtime's run directory (other sandboxes' sockets)", async () => {
      const reply = await rt.client.request('ContainerCreate', { sid: sid }, { container: { id: 'c', args: ['true'], rootfs: join(rt.host.runRoot, '..') } });
      expect(reply.error).toMatchObject({ code: 'InvalidArgument', message: expect.stringMatching(/overlaps the runtime's own directory/) });
    });
  });
}

// ---- probes from inside real containers ----------------------------------------------

/** x86_64 and arm64 system call numbers the probes make through perl's syscall(). */
const SYSCALLS: Record<string, Record<string, number>> = {
  x64: { keyctl: 250, bpf: 321, init_module: 175, finit_module: 313, ptrace: 101, mount: 165, kexec_load: 246 },
  arm64: { keyctl: 219, bpf: 280, init_module: 105, finit_module: 273, ptrace: 117, mount: 40, kexec_load: 104 },
};
const nr = (name: string) => SYSCALLS[process.arch]![name]!;

/**
 * A root filesystem with busybox and perl (perl-base is part of every Debian system): perl's
 * built-in syscall() and socket() let a probe make any system call without tools of its own.
 */
function buildProbeRootfs(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vc-probe-rootfs-'));
  // Readable by the guest, which runs as an unprivileged host user in its user namespace.
  chmodSync(dir, 0o755);
  const copy = (from: string, to = from) => {
    mkdirSync(dirname(join(dir, to)), { recursive: true });
    copyFileSync(realpathSync(from), join(dir, to));
    chmodSync(join(dir, to), 0o755);
  };
  const busybox = ['/usr/bin/busybox', '/bin/busybox'].find(existsSync)!;
  copy(busybox, '/bin/busybox');
  for (const applet of ['sh', 'cat', 'echo', 'ls', 'grep', 'nc', 'mount', 'insmod', 'mkdir', 'tr', 'sleep']) symlinkSync('busybox', join(dir, 'bin', applet));
  copy('/usr/bin/perl', '/bin/perl');
  const libs = execFileSync('ldd', ['/usr/bin/perl'], { encoding: 'utf8' }).matchAll(/(\/\S+) \(0x/g);
  for (const [, lib] of libs) copy(lib!);
  // Mount points of its own: in a user namespace the OCI runtime may not make them in a host directory.
  for (const d of ['dev', 'proc', 'sys']) mkdirSync(join(dir, d));
  mkdirSync(join(dir, 'tmp'), { mode: 0o1777 });
  chmodSync(join(dir, 'tmp'), 0o1777);
  return dir;
}

interface Probe {
  exitStatus: number;
  stdout: string;
  stderr: string;
}

for (const agent of GUEST_AGENTS) {
  describe(`${agent}: a workload inside a container cannot reach the host`, () => {
    const sid = `esc-in-${agent.slice(0, 4)}`;
    const other = `esc-other-${agent.slice(0, 4)}`;
    let probeRoot: string;
    let n = 0;

    beforeAll(async () => {
      probeRoot = buildProbeRootfs();
      for (const id of [sid, other]) await rt.ok('SandboxCreate', {}, { sandbox: { id, agent, backend: 'namespace' }, start: true });
    });
    afterAll(async () => {
      for (const id of [sid, other]) await rt.client.request('SandboxDelete', { sid: id }, { force: true });
      if (probeRoot) rmSync(probeRoot, { recursive: true, force: true });
    });

    /** Runs a shell script in a new container of the probe sandbox (default rootfs, or the perl one). */
    async function probe(script: string, rootfs = ''): Promise<Probe> {
      const cid = `p${++n}`;
      await rt.ok('ContainerCreate', { sid: sid }, { container: { id: cid, args: ['/bin/sh', '-c', script], ...(rootfs ? { rootfs } : {}) } });
      await rt.ok('ContainerStart', { sid: sid, cid: cid });
      const { exitStatus } = await rt.ok('ContainerWait', { sid: sid, cid: cid }, { timeoutMs: 20_000 });
      const logs = await rt.ok('ContainerLogs', { sid: sid, cid: cid });
      await rt.ok('ContainerDelete', { sid: sid, cid: cid }, { force: true });
      return { exitStatus: exitStatus ?? -1, stdout: logs.stdout ?? '', stderr: logs.stderr ?? '' };
    }

    /** A perl one-liner with built-ins only. */
    const perl = (code: string) => probe(`perl -e '${code}'`, probeRoot);

    it("cannot write into the host's /etc", async () => {
      const name = `vc-escape-${agent}-${process.pid}`;
      const out = await probe(`for f in /etc/${name} /proc/1/root/etc/${name} /../../etc/${name}; do echo pwned > "$f" && echo "wrote $f"; done; true`);
      expect(out.stdout).not.toContain('wrote');
      expect(existsSync(`/etc/${name}`)).toBe(false);
    });

    it("cannot read the host's /etc/shadow", async () => {
      const host = readFileSync('/etc/shadow', 'utf8');
      const rootLine = host.split('\n').find((l) => l.startsWith('root:'))!;
      expect(rootLine).toBeDefined();
      const out = await probe('cat /etc/shadow /proc/1/root/etc/shadow /../../etc/shadow 2>&1; ls /root 2>&1; true');
      expect(out.stdout).not.toContain(rootLine);
      expect(out.stdout).not.toMatch(/^root:/m);
    });

    it('sees no host process', async () => {
      const out = await probe('for p in /proc/[0-9]*; do echo "${p#/proc/} $(tr "\\0" " " < $p/cmdline)"; done');
      const seen = out.stdout.trim().split('\n');
      // The container's own init, the probe shell and its short-lived children: nothing else.
      expect(seen.length).toBeLessThanOrEqual(4);
      expect(out.stdout).not.toMatch(/node|vitest|main\.js|nats-server/);
      expect(seen[0]).toMatch(/^1 \/dev\/\.virtactors\/init /);
    });

    it('cannot mount a filesystem', async () => {
      const out = await probe('mkdir -p /tmp/m; mount -t tmpfs none /tmp/m 2>&1; echo "rc=$?"; grep -c " /tmp/m " /proc/mounts');
      expect(out.stdout).toMatch(/rc=[1-9]/);
      expect(out.stdout).toMatch(/Operation not permitted|permission denied/i);
      expect(out.stdout.trim().split('\n').at(-1)).toBe('0');
      const direct = await perl(`my ($src, $dst, $type) = ("none", "/tmp", "tmpfs"); print syscall(${nr('mount')}, $src, $dst, $type, 0, 0), " $!\\n"`);
      expect(direct.stdout).toBe('-1 Operation not permitted\n');
    });

    it('cannot load a kernel module', async () => {
      const out = await perl(`open(my $f, ">", "/tmp/m.ko"); print $f "\\x7fELF junk"; close $f; open($f, "<", "/tmp/m.ko"); my $none = ""; my $image = "junk"; print syscall(${nr('finit_module')}, fileno($f), $none, 0), " $!\\n"; print syscall(${nr('init_module')}, $image, 4, $none), " $!\\n"`);
      expect(out.stdout, out.stderr).toBe('-1 Operation not permitted\n-1 Operation not permitted\n');
    });

    it('cannot load a bpf program', async () => {
      // BPF_PROG_LOAD (5) with an empty attribute: refused before the kernel even reads it.
      const out = await perl(`my $attr = "\\0" x 128; print syscall(${nr('bpf')}, 5, $attr, 128), " $!\\n"`);
      expect(out.stdout).toBe('-1 Operation not permitted\n');
    });

    it('cannot reach the kernel keyring (shared with the host: the filter refuses it, no capability is involved)', async () => {
      // KEYCTL_GET_KEYRING_ID (0) of the session keyring (-3): any process may, unfiltered.
      const out = await perl(`print syscall(${nr('keyctl')}, 0, -3, 0), " $!\\n"`);
      expect(out.stdout).toBe('-1 Operation not permitted\n');
    });

    it('cannot ptrace a process outside the container', async () => {
      const target = spawn('sleep', ['30'], { stdio: 'ignore' });
      try {
        // PTRACE_ATTACH (16) to the host pid (in the container it names nothing, or something of its own).
        const out = await perl(`print syscall(${nr('ptrace')}, 16, ${target.pid}, 0, 0), " $!\\n"`);
        expect(out.stdout).toMatch(/^-1 (Operation not permitted|No such process)\n$/);
        expect(readFileSync(`/proc/${target.pid}/status`, 'utf8')).toMatch(/^TracerPid:\s+0$/m);
      } finally {
        target.kill('SIGKILL');
      }
    });

    it("cannot reach the host's NATS port", async () => {
      const port = new URL(rt.server.url).port;
      // The host answers anyone who connects with an INFO line; the probe shows that it could.
      const fromHost = execFileSync('busybox', ['nc', '-w', '1', '127.0.0.1', port], { encoding: 'utf8', input: '' });
      expect(fromHost).toMatch(/^INFO /);
      const out = await probe(`nc -w 1 127.0.0.1 ${port} </dev/null 2>&1; echo "rc=$?"`);
      expect(out.stdout).not.toMatch(/INFO/);
      expect(out.stdout).toMatch(/rc=[1-9]/);
    });

    it("cannot connect to another sandbox's agent socket", async () => {
      const name = agent === 'kata' ? 'kata.sock' : 'hyper.sock';
      const target = join(rt.host.runRoot, other, name);
      // From the host it is there and answers.
      await new Promise<void>((resolve, reject) => {
        const s = createConnection(target, () => {
          s.destroy();
          resolve();
        });
        s.once('error', reject);
      });
      const paths = [target, `/proc/1/root${target}`, `/../../..${target}`];
      const code = paths
        .map((p) => `socket(S, 1, 1, 0) or die "socket $!"; print connect(S, pack("S a108", 1, "${p}")) ? "connected ${p}\\n" : "refused $!\\n"; close S;`)
        .join(' ');
      const out = await perl(code);
      expect(out.stdout).not.toContain('connected');
      expect(out.stdout.trim().split('\n')).toEqual(paths.map(() => 'refused No such file or directory'));
    });
  });

  describe(`${agent}: the confinement a container runs with`, () => {
    const sid = `esc-conf-${agent.slice(0, 4)}`;
    beforeAll(async () => {
      await rt.ok('SandboxCreate', {}, { sandbox: { id: sid, agent, backend: 'namespace' }, start: true });
      await rt.ok('ContainerCreate', { sid: sid }, { container: { id: 'c', args: ['sleep', '60'] } });
      await rt.ok('ContainerStart', { sid: sid, cid: 'c' });
    });
    afterAll(async () => {
      await rt.client.request('SandboxDelete', { sid: sid }, { force: true });
    });

    const statusOf = async (execId: string): Promise<Record<string, string>> => {
      await rt.ok('ContainerExec', { sid: sid, cid: 'c' }, { execId, args: ['cat', '/proc/self/status'] });
      await rt.ok('ContainerWait', { sid: sid, cid: 'c' }, { execId, timeoutMs: 20_000 });
      const text = (await rt.ok('ContainerLogs', { sid: sid, cid: 'c' }, { execId })).stdout ?? '';
      return Object.fromEntries(text.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
    };
    let reads = 0;
    const initStatus = async (): Promise<Record<string, string>> => {
      // The container's init program (PID 1 is tini; the program is its child).
      const execId = `init-${++reads}`;
      await rt.ok('ContainerExec', { sid: sid, cid: 'c' }, { execId, args: ['sh', '-c', 'cat /proc/$(cat /proc/1/task/1/children | cut -d" " -f1)/status'] });
      await rt.ok('ContainerWait', { sid: sid, cid: 'c' }, { execId, timeoutMs: 20_000 });
      const text = (await rt.ok('ContainerLogs', { sid: sid, cid: 'c' }, { execId })).stdout ?? '';
      return Object.fromEntries(text.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
    };

    it("has exactly Docker's default capabilities", async () => {
      expect((await initStatus()).CapEff).toBe(DOCKER_CAP_EFF);
      expect((await statusOf('caps')).CapEff).toBe(DOCKER_CAP_EFF);
    });

    // The guest chain keeps its capabilities across exec into its user namespace
    // (unshare --keep-caps raises them as ambient): none of that reaches a container.
    it('has no ambient capabilities', async () => {
      expect((await initStatus()).CapAmb).toBe('0000000000000000');
      expect((await statusOf('ambient')).CapAmb).toBe('0000000000000000');
    });

    it('runs under a seccomp filter', async () => {
      expect((await initStatus()).Seccomp).toBe('2');
      expect((await statusOf('seccomp')).Seccomp).toBe('2');
    });

    it('has no_new_privs set', async () => {
      expect((await initStatus()).NoNewPrivs).toBe('1');
      expect((await statusOf('nnp')).NoNewPrivs).toBe('1');
    });

    it('runs in a user namespace: root in the container is an unprivileged host user, and status says so', async () => {
      const status = await rt.ok('SandboxStatus', { sid: sid });
      expect(status.sandbox?.userNamespace).toBe(true);
      const sleepers = (await sandboxProcesses(sid)).filter((pid) => /^(\/bin\/)?sleep\u000060\u0000$/.test(readFileSync(`/proc/${pid}/cmdline`, 'latin1')));
      expect(sleepers).toHaveLength(1);
      const host = readFileSync(`/proc/${sleepers[0]}/status`, 'utf8');
      expect(host).toMatch(new RegExp(`^Uid:\\s+${DEFAULT_USERNS_BASE}\\s+${DEFAULT_USERNS_BASE}\\s`, 'm'));
      expect(readFileSync(`/proc/${sleepers[0]}/uid_map`, 'utf8').trim().split(/\s+/)).toEqual(['0', String(DEFAULT_USERNS_BASE), '65536']);
    });

    it('cannot be made privileged by a viewer: the server refuses the request', async () => {
      const viewer = await connectClient(rt.server.url, rt.server.auth!.viewer);
      try {
        const outcome = await viewer.request('ContainerCreate', { sid: sid }, { container: { id: 'priv', args: ['true'], privileged: true } }).then(
          (reply) => JSON.stringify(reply),
          (err: Error) => err.message,
        );
        expect(outcome).toMatch(/permission denied: role viewer may not container create/);
      } finally {
        await viewer.close();
      }
      expect((await rt.client.request('ContainerStatus', { sid: sid, cid: 'priv' })).error?.code).toBe('NotFound');
    });

    it('cannot be made privileged by anyone on a bus without roles (no credentials), unless the host allows it', async () => {
      const server = await startTestServer({ auth: false });
      const host = await startTestHost(server.url);
      const client = await connectClient(server.url);
      try {
        await client.call('SandboxCreate', {}, { sandbox: { id: 'anon' }, start: true });
        const reply = await client.request('ContainerCreate', { sid: 'anon' }, { container: { id: 'priv', args: ['true'], privileged: true } });
        expect(reply.error).toMatchObject({ code: 'FailedPrecondition', message: expect.stringMatching(/operator role/) });
        expect((await client.request('ContainerStatus', { sid: 'anon', cid: 'priv' })).error?.code).toBe('NotFound');
      } finally {
        await client.close();
        await host.stop();
        await server.dispose();
      }
    });

    it('cannot be made privileged through the annotation the runtime uses to tell the guest', async () => {
      await rt.ok('ContainerCreate', { sid: sid }, { container: { id: 'sneaky', args: ['cat', '/proc/self/status'], annotations: { 'io.virtactors.privileged': 'true' } } });
      await rt.ok('ContainerStart', { sid: sid, cid: 'sneaky' });
      await rt.ok('ContainerWait', { sid: sid, cid: 'sneaky' }, { timeoutMs: 20_000 });
      const text = (await rt.ok('ContainerLogs', { sid: sid, cid: 'sneaky' })).stdout ?? '';
      expect(text).toMatch(new RegExp(`^CapEff:\\s+${DOCKER_CAP_EFF}$`, 'm'));
      expect(text).toMatch(/^Seccomp:\s+2$/m);
    });
  });
}

/** CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP. */
const DOCKER_CAP_EFF = (
  [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31].reduce((mask, bit) => mask | (1n << BigInt(bit)), 0n)
)
  .toString(16)
  .padStart(16, '0');
