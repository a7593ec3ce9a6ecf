// The OCI spec the kata driver sends with CreateContainer. The stock kata agent 1.x needs
// a complete one (reference §10): with no Linux section it dereferences a nil
// Linux.Resources and dies; without a /sys/fs/cgroup mount its container init panics at
// the first exec; it needs an existing rootfs path (so with a stock agent a container must
// name its rootfs: it has no default). So every spec carries Linux with
// Resources and the namespaces a kata container gets (mount, ipc, uts, and a pid
// namespace of its own; the network is the sandbox's), the standard mounts, and a root.
import type { ContainerSpec } from '../../machines/specs.js';
import type { Mount, Process, Spec, StringUser } from '../../protos/kata/index.js';
import { PRIVILEGED_ANNOTATION } from '../../protos/annotations.js';
import type { ProcessSpec } from './agent.js';

export const OCI_VERSION = '1.0.1';


const NOSUID_NOEXEC_NODEV = ['nosuid', 'noexec', 'nodev'];

/** The mounts of runtime-spec's default Linux config, /sys/fs/cgroup included. */
export const STANDARD_MOUNTS: readonly Mount[] = [
  { destination: '/proc', type: 'proc', source: 'proc', options: NOSUID_NOEXEC_NODEV },
  { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
  { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
  { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: [...NOSUID_NOEXEC_NODEV, 'mode=1777', 'size=65536k'] },
  { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: NOSUID_NOEXEC_NODEV },
  { destination: '/sys', type: 'sysfs', source: 'sysfs', options: [...NOSUID_NOEXEC_NODEV, 'ro'] },
  { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: [...NOSUID_NOEXEC_NODEV, 'relatime', 'ro'] },
];

/** A kata container's namespaces: its own mount, ipc, uts and pid namespaces. */
export const CONTAINER_NAMESPACES = ['mount', 'ipc', 'uts', 'pid'] as const;

/** The OCI process of a process spec ("uid[:gid]" or names; names travel as StringUser). */
export function ociProcess(p: ProcessSpec): { process: Process; stringUser?: StringUser } {
  const process: Process = { Args: p.args, Env: p.env, Cwd: p.cwd || '/', Terminal: p.terminal };
  // The terminal's size before the process runs (kata agent 1.x sizes it from ConsoleSize).
  if (p.terminal && p.consoleSize) process.ConsoleSize = { Height: p.consoleSize.rows, Width: p.consoleSize.cols };
  if (!p.user) return { process };
  const [uid = '', gid = ''] = p.user.split(':', 2);
  if (/^\d+$/.test(uid) && (gid === '' || /^\d+$/.test(gid))) process.User = { UID: Number(uid), GID: gid === '' ? 0 : Number(gid) };
  return { process, stringUser: { uid, gid } };
}

/** The complete spec of a container. */
export function ociSpec(spec: ContainerSpec, hostname: string): { spec: Spec; stringUser?: StringUser } {
  const { process, stringUser } = ociProcess({
    args: spec.args, env: spec.env, cwd: spec.cwd, user: spec.user, terminal: spec.terminal, ...(spec.consoleSize ? { consoleSize: spec.consoleSize } : {}),
  });
  // Only the runtime says whether a container is privileged: a client's value under the key is dropped.
  const annotations = { ...(spec.annotations ?? {}) };
  delete annotations[PRIVILEGED_ANNOTATION];
  if (spec.privileged) annotations[PRIVILEGED_ANNOTATION] = 'true';
  return {
    spec: {
      Version: OCI_VERSION,
      Process: process,
      // None named: our guest gives the container a minimal root of its own (never the
      // guest's /); a stock agent, which has no default, refuses it with a clear error.
      Root: { Path: spec.rootfs ?? '', Readonly: false },
      Hostname: spec.hostname || hostname,
      Mounts: STANDARD_MOUNTS.map((m) => ({ ...m, options: [...(m.options ?? [])] })),
      Annotations: annotations,
      Linux: {
        Resources: ociResources(spec.resources),
        Namespaces: CONTAINER_NAMESPACES.map((Type) => ({ Type, Path: '' })),
      },
    },
    ...(stringUser ? { stringUser } : {}),
  };
}

/** OCI linux.resources of a container's limits (64-bit values as the kata protocol has them: numbers). */
function ociResources(r: ContainerSpec['resources']): NonNullable<Spec['Linux']>['Resources'] {
  const out: NonNullable<NonNullable<Spec['Linux']>['Resources']> = {};
  if (!r) return out;
  if (r.memoryLimitBytes) out.Memory = { Limit: r.memoryLimitBytes };
  if (r.pidsLimit) out.Pids = { Limit: r.pidsLimit };
  if (r.cpuQuotaUs || r.cpuPeriodUs || r.cpuShares) {
    out.CPU = {};
    if (r.cpuQuotaUs) out.CPU.Quota = r.cpuQuotaUs;
    if (r.cpuPeriodUs) out.CPU.Period = r.cpuPeriodUs;
    if (r.cpuShares) out.CPU.Shares = r.cpuShares;
  }
  return out;
}
