// The shared directory of a VM sandbox: the host exports one directory over 9p (virtio
// transport) and the guest mounts it by its tag. Container rootfs are staged there by the
// host, one directory per container.
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { promisify } from 'node:util';
import { GuestError } from './errors.js';
import { requireTool } from './tools.js';

const run = promisify(execFile);

/** 9p mount options of kata 1.x and hyperstart (the tag names the host's export). */
export const NINEP_OPTIONS = ['trans=virtio', 'version=9p2000.L'];

/** Whether `dir` already has the 9p export `tag` mounted (the VM's /init mounts it at boot). */
function mountedAt(tag: string, dir: string): boolean {
  const want = dir.replace(/\/+$/, '') || '/';
  try {
    return readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .some((line) => {
        const [source, point, type] = line.split(' ');
        return source === tag && type === '9p' && point === want;
      });
  } catch {
    return false;
  }
}

/** Mounts the host's 9p export `tag` at `dir` (created when missing); one already there is kept. */
export async function mount9p(tag: string, dir: string, options: readonly string[] = NINEP_OPTIONS): Promise<void> {
  if (!/^[A-Za-z0-9_.-]{1,31}$/.test(tag)) throw new GuestError('InvalidArgument', `9p mount tag ${JSON.stringify(tag)} is not a valid tag`);
  if (mountedAt(tag, dir)) return;
  mkdirSync(dir, { recursive: true });
  const mount = requireTool('mount', 'to mount the shared directory');
  try {
    await run(mount, ['-t', '9p', '-o', options.join(','), tag, dir]);
  } catch (err) {
    const text = ((err as { stderr?: string }).stderr ?? (err as Error).message).trim();
    throw new GuestError('FailedPrecondition', `cannot mount the shared directory ${tag} at ${dir}: ${text}`);
  }
}

export async function unmount(dir: string): Promise<void> {
  const umount = requireTool('umount', 'to unmount the shared directory');
  await run(umount, ['-l', dir]).catch(() => {});
}

/** `<root>/<image>/<rootfs>`, refused when it would leave the shared root. */
export function sharedPath(root: string, ...parts: string[]): string {
  const path = posix.join(root, ...parts);
  if (path !== root && !path.startsWith(`${root.replace(/\/+$/, '')}/`)) {
    throw new GuestError('InvalidArgument', `${parts.join('/')} leaves the shared directory`);
  }
  return path;
}
