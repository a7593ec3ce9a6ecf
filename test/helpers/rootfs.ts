// A tiny root filesystem for containers: busybox, some applet links and a marker file.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function busyboxRootfs(marker: string, applets: readonly string[] = ['sh', 'ls', 'cat', 'echo', 'sleep', 'ps']): string {
  const dir = mkdtempSync(join(tmpdir(), 'vc-rootfs-'));
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find(existsSync);
  if (!busybox) throw new Error('busybox is missing: run `npm run setup` (it installs busybox-static)');
  mkdirSync(join(dir, 'bin'));
  copyFileSync(busybox, join(dir, 'bin/busybox'));
  execFileSync('chmod', ['755', join(dir, 'bin/busybox')]);
  for (const applet of applets) symlinkSync('busybox', join(dir, 'bin', applet));
  writeFileSync(join(dir, 'marker'), marker);
  return dir;
}
