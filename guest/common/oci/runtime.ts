// The OCI runtime a guest runs its containers through: crun (Debian's `crun`), or runc
// where the host asks for it. It runs from bundles the guest writes, with a state
// directory of the guest's own, and under the guest's cgroups (the supervisor keeps
// limits, counters and the freezer). crun is told to leave cgroups alone; runc has no such
// mode, so it is given the container's cgroup (made by the supervisor, inside the
// sandbox's) as linux.cgroupsPath, and the supervisor checks where it put the container.
//
// crun 1.8 refuses a hybrid cgroup layout (v1 controllers plus a cgroup2 mount at
// /sys/fs/cgroup/unified), and runc would put containers in that cgroup2 hierarchy too,
// where the sandbox has no cgroup. Where the guest sees one, the runtime runs in a mount
// namespace of its own in which that cgroup2 mount is covered; the guest's own view stays
// as it is. runc also joins named v1 hierarchies (name=systemd), where the sandbox has no
// cgroup either: it runs without them where they can be unmounted (outside a user
// namespace; inside one they are not writable and runc leaves them).
import { accessSync, closeSync, constants, openSync, readFileSync, readSync } from 'node:fs';
import { findTool, requireTool } from '../tools.js';
import type { GuestLog } from '../log.js';

export type OciRuntimeName = 'crun' | 'runc';
export type OciChoice = 'auto' | OciRuntimeName | 'none';

/** Environment variable through which the host picks the runtime for its guests. */
export const OCI_RUNTIME_ENV = 'VIRTACTORS_OCI_RUNTIME';

const DIRS = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin'];

function findBinary(names: readonly string[]): string | undefined {
  for (const name of names) {
    for (const dir of DIRS) {
      try {
        accessSync(`${dir}/${name}`, constants.X_OK);
        return `${dir}/${name}`;
      } catch {
        // next
      }
    }
  }
  return undefined;
}

/** Whether an ELF executable needs no dynamic loader (no PT_INTERP): it runs in any root filesystem. */
export function isStatic(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const head = Buffer.alloc(64);
    if (readSync(fd, head, 0, 64, 0) < 64 || head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2) return false;
    const phoff = Number(head.readBigUInt64LE(32));
    const phentsize = head.readUInt16LE(54);
    const phnum = head.readUInt16LE(56);
    const table = Buffer.alloc(phentsize * phnum);
    readSync(fd, table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i++) if (table.readUInt32LE(i * phentsize) === 3) return false;
    return true;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * The cgroup2 mount of a hybrid layout (v1 controllers mounted too), as this process sees
 * it: only where it is the topmost mount of its directory (one covered by the sandbox is not).
 */
export function hybridUnifiedMount(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): string | undefined {
  let v1 = false;
  const top = new Map<string, string>();
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const fstype = right.split(' ')[0]!;
    const dir = left.split(' ')[4];
    if (fstype === 'cgroup') v1 = true;
    // Later lines are mounted later: on the same directory they cover the earlier ones.
    if (dir) top.set(dir.replace(/\\040/g, ' '), fstype);
  }
  if (!v1) return undefined;
  return [...top.entries()].find(([, fstype]) => fstype === 'cgroup2')?.[0];
}

/** Static programs the guest puts into every container: a shell for the start gate, and tini as its init. */
export interface ContainerHelpers {
  /** A static busybox (its sh and env applets). */
  busybox: string;
  /** tini, statically linked: PID 1 of the container, forwarding signals and reaping orphans. */
  init: string;
}

export function findHelpers(): ContainerHelpers | string {
  const busybox = ['/usr/bin/busybox', '/bin/busybox', '/usr/local/bin/busybox'].find(isStatic);
  if (!busybox) return 'a statically linked busybox (Debian: busybox-static)';
  const init = ['/usr/bin/tini-static', '/usr/local/bin/tini-static', '/sbin/tini-static'].find(isStatic);
  if (!init) return 'a statically linked tini (Debian: tini, for /usr/bin/tini-static)';
  return { busybox, init };
}

/** Whether this process runs in a user namespace (its uid map is not the whole range). */
function inUserNamespace(): boolean {
  try {
    return readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/).join(' ') !== '0 0 4294967295';
  } catch {
    return false;
  }
}

/** Named v1 hierarchies (no controller, such as name=systemd) this process sees, where it may unmount them. */
export function namedHierarchies(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8'), userns = inUserNamespace()): string[] {
  // In a user namespace, mounts inherited from the host are locked (no umount), and the
  // host's named hierarchies are not writable: runc's attempt to join them fails and is ignored.
  if (userns) return [];
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const [fstype, , superOptions = ''] = right.split(' ');
    const dir = left.split(' ')[4];
    if (fstype === 'cgroup' && dir && superOptions.split(',').some((o) => o.startsWith('name='))) out.push(dir.replace(/\\040/g, ' '));
  }
  return out;
}

export class OciRuntime {
  constructor(
    readonly name: OciRuntimeName,
    readonly binary: string,
    /** The runtime's state directory (--root): the guest's own. */
    readonly stateRoot: string,
    readonly helpers: ContainerHelpers,
    /** The cgroup2 mount the runtime must not see (hybrid layouts); undefined when there is none. */
    readonly hiddenMount: string | undefined,
    /** runc: the named cgroup v1 hierarchies it runs without (unmounted in its own mount namespace). */
    readonly unmounts: readonly string[] = [],
  ) {}

  /** runc puts containers into cgroups itself (at the spec's cgroupsPath); crun is told not to. */
  get placesCgroups(): boolean {
    return this.name === 'runc';
  }

  /** Global options before the command. */
  private global(): string[] {
    return this.name === 'crun' ? [`--root=${this.stateRoot}`, '--cgroup-manager=disabled'] : [`--root=${this.stateRoot}`];
  }

  /**
   * `run` in the foreground: the runtime waits for the container and exits with its status.
   * fd 3 is passed on. runc keeps the container (and its cgroup) after the exit, until
   * delete: the host reads the cgroup's OOM counter once the exit is reported.
   */
  runArgv(id: string, bundle: string): string[] {
    return [this.binary, ...this.global(), 'run', ...(this.name === 'runc' ? ['--keep'] : []), '--preserve-fds=1', `--bundle=${bundle}`, id];
  }

  /** `exec` of a process described by a process.json; the runtime waits for it and exits with its status. */
  execArgv(id: string, processFile: string): string[] {
    return [this.binary, ...this.global(), 'exec', `--process=${processFile}`, id];
  }

  deleteArgv(id: string): string[] {
    return [this.binary, ...this.global(), 'delete', '--force', id];
  }

  /** The wrapper that hides cgroup mounts from the runtime: unshare, then the launch shell covers or unmounts them. */
  privateMountArgv(): string[] {
    if (!this.hiddenMount && this.unmounts.length === 0) return [];
    return [requireTool('unshare', 'to give the OCI runtime a mount namespace of its own'), '--mount', '--propagation=private', '--'];
  }
}

export interface OciOptions {
  choice: OciChoice;
  stateRoot: string;
  log?: GuestLog;
}

/**
 * The OCI runtime to use: crun (auto), or runc when chosen.
 * Undefined with `none`, and where containers cannot be made at all (not root).
 * Throws when one is wanted but missing, or its helpers are.
 */
export function detectOciRuntime(options: OciOptions): OciRuntime | undefined {
  if (options.choice === 'none') return undefined;
  if (process.getuid?.() !== 0) {
    options.log?.warn('the guest is not root: containers run without an OCI runtime and are NOT contained');
    return undefined;
  }
  const names: OciRuntimeName[] = options.choice === 'runc' ? ['runc'] : ['crun'];
  let found: { name: OciRuntimeName; binary: string } | undefined;
  for (const name of names) {
    const binary = findBinary([name]);
    if (binary) {
      found = { name, binary };
      break;
    }
  }
  if (!found) throw new Error(`no OCI runtime: install ${names.join(' or ')} (Debian: apt-get install ${names[0]})`);
  const helpers = findHelpers();
  if (typeof helpers === 'string') throw new Error(`containers need ${helpers}`);
  if (!findTool('sh')) throw new Error('sh is not installed in the guest');
  const hidden = hybridUnifiedMount();
  if (hidden) requireTool('mount', `to hide the hybrid cgroup2 mount from ${found.name}`);
  const unmounts = found.name === 'runc' ? namedHierarchies() : [];
  if (unmounts.length > 0) requireTool('umount', 'to run runc without the named cgroup hierarchies');
  return new OciRuntime(found.name, found.binary, options.stateRoot, helpers, hidden, unmounts);
}
