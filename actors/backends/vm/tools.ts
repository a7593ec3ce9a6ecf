// Host programs the VM backend needs, looked up by absolute path; a missing one is named
// with the Debian package that has it.
import { accessSync, constants } from 'node:fs';
import { failedPrecondition } from '../../../bus/errors.js';

const DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** Program → the Debian package that installs it. */
export const PACKAGES: Record<string, string> = {
  'qemu-system-x86_64': 'qemu-system-x86',
  busybox: 'busybox-static',
  crun: 'crun',
  xz: 'xz-utils',
  'apt-get': 'apt',
  'apt-cache': 'apt',
  'dpkg-deb': 'dpkg',
  ldd: 'libc-bin',
  unshare: 'util-linux',
  nsenter: 'util-linux',
  script: 'bsdutils',
  mount: 'mount',
  umount: 'mount',
  stty: 'coreutils',
  ps: 'procps',
};

export function findProgram(name: string): string | undefined {
  for (const dir of DIRS) {
    try {
      accessSync(`${dir}/${name}`, constants.X_OK);
      return `${dir}/${name}`;
    } catch {
      // next
    }
  }
  return undefined;
}

/** The program's path, or a FailedPrecondition naming what to install. */
export function requireProgram(name: string, why: string): string {
  const path = findProgram(name);
  if (path) return path;
  const pkg = PACKAGES[name];
  throw failedPrecondition(`the vm backend needs ${name} ${why}, and this host has none${pkg ? `: install ${pkg} (\`npm run setup\` does)` : ''}`);
}
