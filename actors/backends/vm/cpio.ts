// A newc ("070701") cpio archive, the format the kernel unpacks as an initramfs. Written
// uncompressed: under TCG the guest would spend seconds decompressing it.
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';

export type CpioEntry =
  | { path: string; kind: 'dir'; mode?: number }
  | { path: string; kind: 'file'; mode?: number; source: string }
  | { path: string; kind: 'data'; mode?: number; data: string | Uint8Array }
  | { path: string; kind: 'symlink'; target: string };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

const hex = (n: number) => n.toString(16).padStart(8, '0');
const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);

/**
 * Writes the archive to `out` (through a temporary file, renamed when complete: a full
 * disk leaves no half archive, which the image cache would keep and every boot would use).
 */
export function writeCpio(out: string, entries: readonly CpioEntry[]): void {
  const tmp = `${out}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o644);
  let ino = 1;
  const put = (name: string, mode: number, data: Uint8Array, nlink: number) => {
    const nameBytes = Buffer.from(`${name}\0`);
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
    const header = `070701${[ino++, mode, 0, 0, nlink, 0, data.byteLength, 0, 0, 0, 0, nameBytes.length, 0].map(hex).join('')}`;
    // writeFileSync on a descriptor writes the whole buffer (writeSync may stop short).
    writeFileSync(fd, Buffer.from(header));
    writeFileSync(fd, nameBytes);
    writeFileSync(fd, pad(110 + nameBytes.length));
    if (data.byteLength > 0) {
      writeFileSync(fd, data);
      writeFileSync(fd, pad(data.byteLength));
    }
  };
  try {
    for (const e of entries) {
      const path = e.path.replace(/^\/+/, '');
      switch (e.kind) {
        case 'dir':
          put(path, S_IFDIR | (e.mode ?? 0o755), new Uint8Array(), 2);
          break;
        case 'file':
          put(path, S_IFREG | (e.mode ?? 0o755), readFileSync(e.source), 1);
          break;
        case 'data':
          put(path, S_IFREG | (e.mode ?? 0o644), typeof e.data === 'string' ? Buffer.from(e.data) : e.data, 1);
          break;
        case 'symlink':
          put(path, S_IFLNK | 0o777, Buffer.from(e.target), 1);
          break;
      }
    }
    put('TRAILER!!!', 0, new Uint8Array(), 1);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, out);
}
