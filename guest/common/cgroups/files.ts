// Control-file helpers. cgroupfs answers from kernel memory, so these are synchronous.
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const errno = (err: unknown) => (err as NodeJS.ErrnoException).code;

export function read(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** A number from a one-value file; "max" and missing files give `fallback`. */
export function readNumber(file: string, fallback = 0): number {
  const text = read(file)?.trim();
  if (!text || text === 'max') return fallback;
  const n = Number(text);
  return Number.isFinite(n) ? n : fallback;
}

/** "key value" lines (memory.stat, cpu.stat, ...). */
export function readKeyed(file: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of (read(file) ?? '').split('\n')) {
    const [k, v] = line.split(' ');
    if (k && v !== undefined && Number.isFinite(Number(v))) out[k] = Number(v);
  }
  return out;
}

export function write(file: string, value: string): void {
  writeFileSync(file, value);
}

export function makeDir(dir: string): void {
  try {
    mkdirSync(dir);
  } catch (err) {
    if (errno(err) !== 'EEXIST') throw err;
  }
}

/** Removes an empty cgroup; a cgroup whose last process just died stays busy for a moment. */
export async function removeDir(dir: string, attempts = 200): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      if (errno(err) === 'ENOENT') return;
      if (errno(err) !== 'EBUSY' || i >= attempts) throw err;
      await sleep(i < 20 ? 1 : 10);
    }
  }
}

/** Polls until `done()` or the deadline; true when it got there. */
export async function until(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (let i = 0; ; i++) {
    if (done()) return true;
    if (Date.now() >= end) return false;
    await sleep(i < 20 ? 1 : 10);
  }
}

/** Cgroup paths from /proc/<pid>/cgroup (this process's by default): controller list (or "" for v2) → path. */
export function ownCgroups(pid: number | 'self' = 'self'): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of (read(`/proc/${pid}/cgroup`) ?? '').split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

export interface CgroupMount {
  /** Where it is mounted. */
  dir: string;
  /** The cgroup path the mount shows as its root (not "/" inside some containers). */
  root: string;
  version: 1 | 2;
  readonly: boolean;
  /** v1: the controllers of the hierarchy. */
  controllers: string[];
}

/** cgroup mounts from /proc/self/mountinfo. */
export function cgroupMounts(): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of (read('/proc/self/mountinfo') ?? '').split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const f = left.split(' ');
    const [fstype, , superOpts = ''] = right.split(' ');
    const dir = (f[4] ?? '').replace(/\\040/g, ' ');
    const root = f[3] ?? '/';
    const readonly = (f[5] ?? '').split(',').includes('ro') || superOpts.split(',').includes('ro');
    if (fstype === 'cgroup2') out.push({ dir, root, version: 2, readonly, controllers: [] });
    else if (fstype === 'cgroup') {
      const controllers = superOpts.split(',').filter((o) => o !== 'rw' && o !== 'ro' && !o.includes('=') && !['relatime', 'noexec', 'nosuid', 'nodev', 'clone_children', 'noprefix', 'xattr'].includes(o));
      out.push({ dir, root, version: 1, readonly, controllers });
    }
  }
  return out;
}

/** The directory of a cgroup path under a mount. */
export function dirOf(mount: CgroupMount, path: string): string {
  const rel = mount.root !== '/' && path.startsWith(mount.root) ? path.slice(mount.root.length) : path;
  return `${mount.dir}${rel === '/' ? '' : rel}`;
}
