// Admission by memory: a guest is not started when the host could not hold it and still
// keep a reserve for itself (the runtime, nats-server, the kernel's caches). Without it,
// anyone allowed to create sandboxes could start guests until the kernel's OOM killer
// picks a victim, which may be the runtime or another tenant's guest.
import { readFileSync } from 'node:fs';
import { resourceExhausted } from '../../bus/errors.js';
import { readHostCgroups, type HostCgroups } from './cgroups/host.js';

/** What the host keeps for itself unless told otherwise (VC_MEMORY_RESERVE_MIB). */
export const DEFAULT_MEMORY_RESERVE_MIB = 256;

/** What a guest process (a guest agent on Node) takes, about: its RSS when idle is ~50 MiB. */
export const GUEST_PROCESS_MIB = 64;

/** Where the memory figures are read: the real files, or a test's copies of them. */
export interface MemorySources {
  meminfo: string;
  /** Where this process sits in the cgroup hierarchies. */
  cgroups: HostCgroups | undefined;
}

/** This process's cgroups do not move: read once (cgroups/host.ts also knows a mount's sub-root). */
let own: Promise<HostCgroups | undefined> | undefined;
const ownCgroups = () => (own ??= readHostCgroups().catch(() => undefined));

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
function cgroupRoomBytes(cgroups: HostCgroups | undefined): number | undefined {
  const v1 = cgroups?.v1.find((h) => h.controllers.includes('memory'));
  const v2 = cgroups?.v2?.controllers.includes('memory') ? cgroups.v2 : undefined;
  const [dir, limitFile, usageFile] = v1 ? [v1.own, 'memory.limit_in_bytes', 'memory.usage_in_bytes'] : v2 ? [v2.own, 'memory.max', 'memory.current'] : [];
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
export async function availableMiB(src?: MemorySources): Promise<number | undefined> {
  const { meminfo, cgroups } = src ?? { meminfo: '/proc/meminfo', cgroups: await ownCgroups() };
  const kib = /^MemAvailable:\s+(\d+) kB$/m.exec(read(meminfo) ?? '')?.[1];
  const host = kib === undefined ? undefined : Number(kib) * 1024;
  const room = cgroupRoomBytes(cgroups);
  const bytes = host === undefined ? room : room === undefined ? host : Math.min(host, room);
  return bytes === undefined ? undefined : Math.floor(bytes / 1024 / 1024);
}

/** Refuses with ResourceExhausted when `needMiB` would leave less than the reserve available. */
export async function requireMemory(needMiB: number, reserveMiB: number, what: string, measured?: number): Promise<void> {
  const available = measured ?? (await availableMiB());
  if (available === undefined || available - needMiB >= reserveMiB) return;
  throw resourceExhausted(
    `${what} needs about ${needMiB} MiB and the host has ${available} MiB available, ${reserveMiB} MiB of which it keeps for itself (VC_MEMORY_RESERVE_MIB): ` +
      'delete a sandbox or free memory, then retry',
  );
}
