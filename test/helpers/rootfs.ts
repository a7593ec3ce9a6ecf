// A tiny root filesystem for containers: busybox, some applet links and a marker file.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function busyboxRootfs(marker: string, applets: readonly string[] = ['sh', 'ls', 'cat', 'echo', 'sleep', 'ps']): string {
  const dir = mkdtempSync(join(tmpdir(), 'vc-rootfs-'));
  // Readable by the guest, which runs as an unprivileged host user in its user namespace.
  chmodSync(dir, 0o755);
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find(existsSync);
  if (!busybox) throw new Error('busybox is missing: run `npm run setup` (it installs busybox-static)');
  // Mount points of its own: in a user namespace the OCI runtime may not make them in a host directory.
  for (const d of ['bin', 'dev', 'proc', 'sys']) mkdirSync(join(dir, d));
  copyFileSync(busybox, join(dir, 'bin/busybox'));
  execFileSync('chmod', ['755', join(dir, 'bin/busybox')]);
  for (const applet of applets) symlinkSync('busybox', join(dir, 'bin', applet));
  writeFileSync(join(dir, 'marker'), marker);
  return dir;
}

/** Every applet the host's busybox has (for a rootfs that runs whatever a test asks). */
export function busyboxApplets(): string[] {
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find(existsSync);
  if (!busybox) throw new Error('busybox is missing: run `npm run setup` (it installs busybox-static)');
  return execFileSync(busybox, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox');
}
