// File-level helpers shared by the v1 and v2 drivers: walking a cgroup subtree,
// reading its members, killing them and removing the directories bottom-up.
//
// cgroupfs lives in kernel memory and each operation takes tens of microseconds, so the
// drivers use synchronous calls: the thread-pool round trip of the async ones costs far
// more than the operation, and creating a sandbox cgroup is on every boot's path.
import { readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const errno = (err: unknown) => (err as NodeJS.ErrnoException).code;

/** Every directory of the subtree, children before their parent; [] when it is gone. */
export function subtree(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if (errno(err) === 'ENOENT') return [];
    throw err;
  }
  const out: string[] = [];
  for (const e of entries) if (e.isDirectory()) out.push(...subtree(join(dir, e.name)));
  out.push(dir);
  return out;
}

export function readText(file: string): string {
  return readFileSync(file, 'utf8');
}

export function writeText(file: string, value: string): void {
  writeFileSync(file, value);
}

export function readPids(dir: string): number[] {
  try {
    const text = readFileSync(join(dir, 'cgroup.procs'), 'utf8');
    return text.split('\n').filter(Boolean).map(Number);
  } catch (err) {
    if (errno(err) === 'ENOENT' || errno(err) === 'ENODEV') return [];
    throw err;
  }
}

/** Host pids in the whole subtree of each directory, without duplicates. */
export function subtreePids(dirs: readonly string[]): number[] {
  const pids = new Set<number>();
  for (const dir of dirs) for (const d of subtree(dir)) for (const p of readPids(d)) pids.add(p);
  return [...pids];
}

export function killPids(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** Writes a control file; false when the kernel refuses (missing controller, busy, read-only). */
export function tryWrite(file: string, value: string): boolean {
  try {
    writeFileSync(file, value);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes a subtree, children first. A cgroup whose last process has just died can stay
 * busy for a moment until the kernel finishes its exit, so EBUSY is retried briefly.
 */
export async function removeSubtree(dir: string, attempts = 100): Promise<void> {
  for (const d of subtree(dir)) {
    for (let i = 0; ; i++) {
      try {
        rmdirSync(d);
        break;
      } catch (err) {
        if (errno(err) === 'ENOENT') break;
        if (errno(err) !== 'EBUSY' || i >= attempts) throw err;
        await sleep(i < 10 ? 1 : 10);
      }
    }
  }
}

/** Removes a directory if it is empty; used for the shared parent, which others may still use. */
export function removeIfUnused(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // Still used by another sandbox.
  }
}

/**
 * Guards every destructive operation: only a directory that is named after the sandbox's
 * owner directly below the shared group directory is ever killed or removed.
 */
export function assertSandboxDir(dir: string, group: string, name: string): void {
  const parts = dir.split('/');
  if (parts.at(-1) !== name || parts.at(-2) !== group) {
    throw new Error(`refusing to touch ${dir}: not a sandbox cgroup`);
  }
}
