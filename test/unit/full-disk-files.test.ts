// Files the runtime writes whole or not at all, on a real full disk (a small tmpfs of the
// test's own): a credentials file and a VM image's initramfs. On ENOSPC the write fails,
// no temporary file stays, and what was there before is untouched.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePrivateFile } from '../../bus/auth-files.js';
import { writeCpio } from '../../actors/backends/vm/cpio.js';
import { mountSmallDisk, type SmallDisk } from '../helpers/small-disk.js';

describe('whole files on a full disk', () => {
  let disk: SmallDisk;
  beforeAll(() => {
    disk = mountSmallDisk(64, '0700');
  });
  afterAll(() => disk?.remove());

  it('a credentials file: the old one stays whole and nothing half-written is left', () => {
    const path = join(disk.dir, 'keys', 'op.creds');
    writePrivateFile(path, 'old creds\n');
    // A page free: the new text (two pages) starts to fit, then the disk refuses the rest.
    disk.fill(4096);
    try {
      expect(() => writePrivateFile(path, 'n'.repeat(8192))).toThrow(/ENOSPC/);
      expect(readFileSync(path, 'utf8')).toBe('old creds\n');
      expect(readdirSync(join(disk.dir, 'keys'))).toEqual(['op.creds']);
    } finally {
      disk.free();
    }
  });

  it("an initramfs: no archive is put in place, and the image directory keeps nothing of it", () => {
    const out = join(disk.dir, 'initrd.cpio');
    disk.fill(4096);
    try {
      expect(() => writeCpio(out, [{ path: 'init', kind: 'data', data: 'x'.repeat(16384) }])).toThrow(/ENOSPC/);
      expect(readdirSync(disk.dir).sort()).toEqual(['fill', 'keys']);
    } finally {
      disk.free();
    }
  });
});
