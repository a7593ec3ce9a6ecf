// The namespace backend: the guest command runs as PID 1 of new pid, mount, uts, ipc and
// net namespaces, inside a cgroup of its own (named after the host and the incarnation).
//
// The chain is  unshare (new namespaces, exec) → timeout (fork, wait) → sh prelude (PID 1,
// exec) → guest.  `unshare --fork` would be shorter, but util-linux 2.38 reports a child
// killed by SIGKILL as a plain exit status 1; `timeout 0` (no time limit) waits for PID 1
// and dies of the same signal, so the runtime sees the guest's real exit. The prelude is
// the only shell: it joins the cgroup before anything else runs, mounts the namespace's own
// /proc, sets the hostname, brings loopback up, reports the guest's host pid on fd 3 and
// execs the guest.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, chownSync, constants, readlinkSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { failedPrecondition, invalidArgument } from '../../bus/errors.js';
import type { BootRequest, GuestMemory } from './backend.js';
import { MAX_HOSTNAME_LEN } from '../../machines/specs.js';
import { DEFAULT_SANDBOX_PIDS_MAX, hostCgroupDriver, hasLimits, limitsFromAnnotations, memoryUsage, oomCounters, OomWatch, readHostCgroups, type CgroupDriver, type OomCounter } from './cgroups/index.js';
import { DetachedGuestBackend, type GuestBackendOptions, type GuestRun } from './detached.js';
import { guestEnvironment, logTail, signal } from './guest-files.js';
import { inUserNamespace, kernelAllowsUserNamespaces, mapUserNamespace, reachableByOthers, unshareEntersMapped, USERNS_GO_FD, type UserNamespaceSetting } from './userns.js';

export interface NamespaceTools {
  unshare: string;
  timeout: string;
  sh: string;
  mount: string;
  /** To set the sandbox's hostname by sethostname(2), as a user namespace's root may. */
  hostname?: string;
  /** iproute2; without it loopback stays down. */
  ip: string | undefined;
}

const BIN_DIRS = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function findTool(name: string): string | undefined {
  for (const dir of BIN_DIRS) {
    try {
      accessSync(`${dir}/${name}`, constants.X_OK);
      return `${dir}/${name}`;
    } catch {
      // next
    }
  }
  return undefined;
}

/** The host programs the backend needs; undefined when one is missing. */
export function namespaceTools(): NamespaceTools | undefined {
  const [unshare, timeout, sh, mount] = ['unshare', 'timeout', 'sh', 'mount'].map(findTool);
  if (!unshare || !timeout || !sh || !mount) return undefined;
  const hostname = findTool('hostname');
  return { unshare, timeout, sh, mount, ip: findTool('ip'), ...(hostname ? { hostname } : {}) };
}

// Arguments: hostname, mount, ip ("" when missing), the cgroup2 mount to hide ("" when
// none), the hostname program (in a user namespace, whose root may not write
// /proc/sys/kernel/hostname; "" otherwise: the shell writes it, one process fewer), the number of cgroup.procs files, the files, then the guest's argv; nothing is
// interpolated into the script. The first line runs while /proc is still the host's, so
// /proc/self/stat names PID 1 by its host pid. On a hybrid cgroup host the sandbox's own
// mount namespace covers the cgroup2 mount with an empty tmpfs: crun refuses to run beside
// it and v1 controllers (the guest uses the v1 ones), and in a user namespace the mount is
// locked to its parent, so it can be covered but not removed.
const PRELUDE = `read -r pid rest < /proc/self/stat || exit 125
host=$1 mnt=$2 ip=$3 hide=$4 hn=$5 n=$6
shift 6
while [ "$n" -gt 0 ]; do echo 0 > "$1" || exit 125; n=$((n - 1)); shift; done
"$mnt" -t proc -o nosuid,nodev,noexec proc /proc || exit 125
if [ -n "$hide" ]; then "$mnt" -t tmpfs -o ro,nosuid,nodev,noexec,size=4k virtactors-hidden "$hide" || exit 125; fi
if [ -n "$hn" ]; then "$hn" "$host" || exit 125; else printf %s "$host" > /proc/sys/kernel/hostname || exit 125; fi
if [ -n "$ip" ]; then "$ip" link set lo up || exit 125; fi
echo "ok $pid" >&3
exec "$@" 3>&-`;

const SIGTERM_BIT = 15n - 1n;

/** Whether a process handles SIGTERM; PID 1 of a pid namespace never receives it otherwise. */
async function catchesSigterm(pid: number): Promise<boolean> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const hex = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return hex !== undefined && ((BigInt(`0x${hex}`) >> SIGTERM_BIT) & 1n) === 1n;
}

/** Resolves with the guest's host pid once the prelude is done; undefined when it failed. */
function readReady(child: ChildProcess): Promise<number | undefined> {
  const pipe = child.stdio[3] as Readable;
  return new Promise((resolve) => {
    let buffered = '';
    const finish = (pid: number | undefined) => {
      pipe.removeAllListeners();
      pipe.on('error', () => {});
      pipe.destroy();
      resolve(pid);
    };
    pipe.setEncoding('utf8');
    pipe.on('data', (chunk: string) => {
      buffered += chunk;
      const m = /^ok (\d+)$/m.exec(buffered);
      if (m) finish(Number(m[1]));
    });
    pipe.on('end', () => finish(undefined));
    pipe.on('error', () => finish(undefined));
    child.once('error', () => finish(undefined));
  });
}

function pidNamespace(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined;
  }
}

/**
 * The waiter normally exits because PID 1 did. If it is killed on its own, PID 1 would
 * run on unwatched, so it goes too: the guest ends with its waiter. The pid namespace
 * tells PID 1 apart from a process that reused its pid after it was reaped.
 */
function killOrphanedGuest(waiter: ChildProcess, pid: number): void {
  const ns = pidNamespace(pid);
  waiter.once('exit', () => {
    if (ns !== undefined && pidNamespace(pid) === ns) signal(pid, 'SIGKILL');
  });
}

let hybrid: Promise<string | undefined> | undefined;

/** The cgroup2 mount of a hybrid host (v1 controllers mounted too), read once. */
function hybridUnifiedMount(): Promise<string | undefined> {
  hybrid ??= readHostCgroups().then(
    (h) => (h.v1.length > 0 && h.v2 ? h.v2.mount : undefined),
    () => undefined,
  );
  return hybrid;
}

let loopbackWarned = false;

export interface NamespaceBackendOptions extends GuestBackendOptions {
  tools?: NamespaceTools;
  /** User namespaces (on by default where the kernel allows them; VC_USERNS=0 turns them off). */
  userns?: UserNamespaceSetting;
  /** The cgroup driver; by default the host's (none when cgroups are not writable). */
  cgroups?: () => Promise<CgroupDriver | undefined>;
  /** The pids limit of a sandbox that asks for none (default DEFAULT_SANDBOX_PIDS_MAX; 0: none). */
  sandboxPidsMax?: number;
}

export class NamespaceBackend extends DetachedGuestBackend {
  readonly type = 'namespace' as const;
  private readonly tools: NamespaceTools;
  private readonly cgroups: () => Promise<CgroupDriver | undefined>;
  private readonly userns: UserNamespaceSetting;
  private readonly sandboxPidsMax: number;
  private usernsWarned = false;
  /** The OOM counters of this run's cgroups. */
  private oom: OomWatch | undefined;
  private memoryUsage: (() => number | undefined) | undefined;

  oomKilled(containerId: string): OomCounter | undefined {
    return this.oom?.moved(containerId);
  }

  guestMemory(): GuestMemory | undefined {
    const bytes = this.memoryUsage?.();
    return bytes === undefined ? undefined : { bytes, measure: 'cgroup' };
  }

  constructor(options: NamespaceBackendOptions) {
    super(options);
    this.userns = options.userns ?? { enabled: false, base: 0, size: 0 };
    const tools = options.tools ?? namespaceTools();
    if (!tools) throw failedPrecondition('the namespace backend needs unshare, timeout, sh and mount on this host');
    this.tools = tools;
    this.cgroups = options.cgroups ?? (() => hostCgroupDriver(this.log));
    this.sandboxPidsMax = options.sandboxPidsMax ?? DEFAULT_SANDBOX_PIDS_MAX;
    if (!tools.ip && !loopbackWarned) {
      loopbackWarned = true;
      this.log.warn('iproute2 (ip) is not installed: loopback stays down in namespace sandboxes');
    }
  }

  protected environment(request: BootRequest): Record<string, string> {
    return guestEnvironment(request.plan, request.sandbox.id);
  }

  /** Whether this guest can run in a user namespace: the kernel allows it and its files are readable to an unprivileged uid. */
  private usernsFor(command: readonly string[], runDir: string): boolean {
    if (!this.userns.enabled) return false;
    // The run root is the runtime's own: searchable (not listable) by the guests, whose run directories are theirs.
    const runRoot = dirname(resolve(runDir));
    const mode = statSync(runRoot).mode & 0o7777;
    if ((mode & 0o001) === 0) chmodSync(runRoot, mode | 0o111);
    const files = command.filter((a, i) => i === 0 || (a.startsWith('/') && /\.[cm]?js$/.test(a)));
    const why = !kernelAllowsUserNamespaces()
      ? 'the kernel allows no user namespaces'
      : !unshareEntersMapped(this.tools.unshare)
        ? `${this.tools.unshare} has no --keep-caps or --setuid (util-linux 2.35 or later has them)`
        : [...files.filter((f) => !reachableByOthers(f)), ...(reachableByOthers(runDir, false) ? [] : [runDir])][0];
    if (why === undefined) return true;
    if (!this.usernsWarned) {
      this.usernsWarned = true;
      this.log.warn({ why }, typeof why === 'string' && why.startsWith('/') ? `sandboxes run without a user namespace: ${why} is not readable by an unprivileged user` : `sandboxes run without a user namespace: ${why}`);
    }
    return false;
  }

  protected async launch(run: GuestRun, env: Record<string, string>, logFd: number): Promise<number> {
    const { sandbox, plan, runDir, incarnation } = run.request;
    const grpc = plan.endpoint.grpcAddress;
    if (grpc && !grpc.startsWith('unix:')) {
      throw invalidArgument(`grpc address ${grpc}: a namespace guest has its own network, so the host reaches it through a unix socket only`);
    }
    const hostname = sandbox.hostname || sandbox.id;
    if (Buffer.byteLength(hostname) > MAX_HOSTNAME_LEN) throw invalidArgument(`hostname ${hostname} is longer than ${MAX_HOSTNAME_LEN} bytes`);

    const limits = limitsFromAnnotations(sandbox.annotations);
    if (this.sandboxPidsMax > 0) limits.defaultPidsMax = this.sandboxPidsMax;
    const driver = await this.cgroups();
    if (!driver && hasLimits(limits)) throw failedPrecondition('this host has no writable cgroups: sandbox limits cannot be applied');
    const cgroup = driver ? await driver.create({ host: incarnation.host, sandboxId: sandbox.id, incarnation: incarnation.uid }, limits) : undefined;
    if (cgroup) run.teardown.push(() => cgroup.destroy());
    const memoryDir = cgroup?.memoryDir;
    this.oom = memoryDir ? new OomWatch((cid) => oomCounters(memoryDir, cgroup.version, cid)) : undefined;
    this.memoryUsage = memoryDir ? () => memoryUsage(memoryDir, cgroup.version) : undefined;

    const t = this.tools;
    const procs = cgroup?.procsFiles ?? [];
    const hide = await hybridUnifiedMount();
    const userns = this.usernsFor(plan.command, runDir);
    if (userns) {
      const { base } = this.userns;
      // The guest is root only inside: it gets its run directory and may make child cgroups.
      chownSync(runDir, base, base);
      cgroup?.delegate(base, base);
      run.userns = true;
    }
    const args = [
      // In a user namespace: its root from here on, the maps written by then.
      ...(userns ? ['--setuid', '0', '--setgid', '0'] : []),
      '--pid', '--mount', '--uts', '--ipc', '--net', '--propagation', 'private', '--',
      t.timeout, '--foreground', '0',
      t.sh, '-c', PRELUDE, 'virtactors-guest', hostname, t.mount, t.ip ?? '', hide ?? '', userns ? (t.hostname ?? '') : '', String(procs.length), ...procs,
      ...plan.command,
    ];
    // The user namespace first, so that the namespaces unshare makes next are owned by it.
    const [file, ...argv] = userns ? inUserNamespace(t.unshare, t.sh, [t.unshare, ...args]) : [t.unshare, ...args];
    const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', logFd, logFd, 'pipe'];
    if (userns) stdio[USERNS_GO_FD] = 'pipe';
    const child = spawn(file!, argv, { detached: true, stdio, env, cwd: '/' });
    this.track(run, child);
    if (userns) {
      try {
        await mapUserNamespace(child, this.userns);
      } catch (err) {
        child.kill('SIGKILL');
        throw new Error(`the namespace guest of sandbox ${sandbox.id} did not start: ${(err as Error).message}`);
      }
    }
    const pid = await readReady(child);
    if (pid === undefined) {
      const tail = await logTail(runDir);
      throw new Error(`the namespace guest of sandbox ${sandbox.id} did not start${tail ? `: ${tail}` : ''}`);
    }
    killOrphanedGuest(child, pid);
    return pid;
  }

  /** The cgroup this incarnation made (named after it) goes when the adopted guest is stopped. */
  protected async adoptedTeardown(run: GuestRun): Promise<void> {
    const { sandbox, incarnation } = run.request;
    const driver = await this.cgroups();
    if (driver) run.teardown.push(() => driver.open({ host: incarnation.host, sandboxId: sandbox.id, incarnation: incarnation.uid }).destroy());
  }

  protected async terminate(run: GuestRun): Promise<boolean> {
    // A guest without a SIGTERM handler would never see it: no grace period, kill at once.
    if (run.pid === undefined || !(await catchesSigterm(run.pid))) return false;
    return signal(run.pid, 'SIGTERM');
  }

  protected kill(run: GuestRun): void {
    // PID 1 takes the whole pid namespace with it. Before its pid is known (a boot that
    // failed half-way) only the waiter can be named; the cgroup clean-up gets the rest.
    if (run.pid !== undefined) signal(run.pid, 'SIGKILL');
    else if (run.child?.pid !== undefined) signal(run.child.pid, 'SIGKILL');
  }
}
