// A small tmpfs of the test's own, to fill up: a real full disk (ENOSPC, short writes)
// under what the test points at it, without touching any disk the machine uses. Only the
// test's own file is written to fill it, and only that mount is removed.
import { execFileSync } from 'node:child_process';
import { closeSync, ftruncateSync, fstatSync, mkdtempSync, openSync, rmSync, rmdirSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SmallDisk {
  /** Where it is mounted. */
  dir: string;
  /** Fills it with the test's file until the kernel says ENOSPC, then frees `leaveBytes` (whole pages). */
  fill(leaveBytes?: number): void;
  /** Removes the filling. */
  free(): void;
  /** Unmounts it and removes the mount point (every file on it must be closed). */
  remove(): void;
}

const FILL = 'fill';

export function mountSmallDisk(sizeKiB: number, mode = '0711'): SmallDisk {
  const dir = mkdtempSync(join(tmpdir(), 'vc-small-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k,mode=${mode}`, 'vc-small-disk', dir]);
  let mounted = true;
  return {
    dir,
    fill(leaveBytes = 0) {
      const fd = openSync(join(dir, FILL), 'a');
      try {
        for (;;) writeSync(fd, Buffer.alloc(4096));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
      try {
        if (leaveBytes > 0) ftruncateSync(fd, Math.max(0, fstatSync(fd).size - leaveBytes));
      } finally {
        closeSync(fd);
      }
    },
    free() {
      rmSync(join(dir, FILL), { force: true });
    },
    remove() {
      if (mounted) execFileSync('umount', [dir]);
      mounted = false;
      rmdirSync(dir);
    },
  };
}
