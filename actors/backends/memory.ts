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

/** MemAvailable of /proc/meminfo in MiB, or undefined where there is none. */
export function availableMiB(meminfo = '/proc/meminfo'): number | undefined {
  try {
    const kib = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync(meminfo, 'utf8'))?.[1];
    return kib === undefined ? undefined : Math.floor(Number(kib) / 1024);
  } catch {
    return undefined;
  }
}

/** Refuses with ResourceExhausted when `needMiB` would leave less than the reserve available. */
export function requireMemory(needMiB: number, reserveMiB: number, what: string, available = availableMiB()): void {
  if (available === undefined || available - needMiB >= reserveMiB) return;
  throw resourceExhausted(
    `${what} needs about ${needMiB} MiB and the host has ${available} MiB available, ${reserveMiB} MiB of which it keeps for itself (VC_MEMORY_RESERVE_MIB): ` +
      'delete a sandbox or free memory, then retry',
  );
}
