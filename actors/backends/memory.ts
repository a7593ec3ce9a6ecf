// Admission by memory: a guest is not started when the host could not hold it and still
// keep a reserve for itself (the runtime, nats-server, the kernel's caches). Without it,
// anyone allowed to create sandboxes could start guests until the kernel's OOM killer
// picks a victim, which may be the runtime or another tenant's guest.
import { readFileSync } from 'node:fs';
import { resourceExhausted } from '../../bus/errors.js';

/** What the host keeps for itself unless told otherwise (VC_MEMORY_RESERVE_MIB). */
export const DEFAULT_MEMORY_RESERVE_MIB = 256;

/** What a guest process (a guest agent on Node) takes, about: its RSS when idle is ~50 MiB. */
export const GUEST_PROCESS_MIB = 64;

/** Where the memory figures are read: the real files, or a test's copies of them. */
export interface MemorySources {
  meminfo: string;
  /** This process's cgroup membership (/proc/self/cgroup). */
  selfCgroup: string;
  /** Where the cgroup hierarchies are mounted. */
  cgroupRoot: string;
}

const REAL: MemorySources = { meminfo: '/proc/meminfo', selfCgroup: '/proc/self/cgroup', cgroupRoot: '/sys/fs/cgroup' };

const read = (path: string): string | undefined => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/**
 * What the runtime's own cgroup still allows, in bytes: its limit less its usage (the
 * guests' cgroups are below it, so their memory counts). Undefined when it has no limit.
 */
function cgroupRoomBytes(src: MemorySources): number | undefined {
  const lines = read(src.selfCgroup)?.split('\n') ?? [];
  const v1 = lines.find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l));
  const v2 = lines.find((l) => l.startsWith('0::'));
  const [dir, limitFile, usageFile] = v1
    ? [`${src.cgroupRoot}/memory${v1.slice(v1.lastIndexOf(':') + 1)}`, 'memory.limit_in_bytes', 'memory.usage_in_bytes']
    : v2
      ? [`${src.cgroupRoot}${v2.slice(3)}`, 'memory.max', 'memory.current']
      : [];
  if (!dir) return undefined;
  const limit = Number(read(`${dir}/${limitFile}`)?.trim());
  const usage = Number(read(`${dir}/${usageFile}`)?.trim());
  // "max" on v2, a page-rounded 2^63 on v1: no limit.
  if (!Number.isFinite(limit) || !Number.isFinite(usage) || limit >= 2 ** 62) return undefined;
  return Math.max(0, limit - usage);
}

/**
 * Memory available to new guests in MiB: the kernel's MemAvailable, or less where the
 * runtime runs in a cgroup with a limit (a container, a systemd unit with MemoryMax).
 * Undefined where neither can be read.
 */
export function availableMiB(src: MemorySources = REAL): number | undefined {
  const kib = /^MemAvailable:\s+(\d+) kB$/m.exec(read(src.meminfo) ?? '')?.[1];
  const host = kib === undefined ? undefined : Number(kib) * 1024;
  const room = cgroupRoomBytes(src);
  const bytes = host === undefined ? room : room === undefined ? host : Math.min(host, room);
  return bytes === undefined ? undefined : Math.floor(bytes / 1024 / 1024);
}

/** Refuses with ResourceExhausted when `needMiB` would leave less than the reserve available. */
export function requireMemory(needMiB: number, reserveMiB: number, what: string, available = availableMiB()): void {
  if (available === undefined || available - needMiB >= reserveMiB) return;
  throw resourceExhausted(
    `${what} needs about ${needMiB} MiB and the host has ${available} MiB available, ${reserveMiB} MiB of which it keeps for itself (VC_MEMORY_RESERVE_MIB): ` +
      'delete a sandbox or free memory, then retry',
  );
}
