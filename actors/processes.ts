// What the host side asks of /proc about a process it started (a guest, a qemu, a private
import { readFileSync } from 'node:fs';
// nats-server): one answer, so that a zombie counts as gone everywhere.

/** Whether the process exists and has not exited (a zombie waiting to be reaped is gone). */
export function isAlive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}
