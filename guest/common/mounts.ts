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

const pointOf = (dir: string) => dir.replace(/\/+$/, '') || '/';
const mountKey = (tag: string, point: string) => `${tag}\u0000${point}`;

/** The 9p mounts in the mount table now, as `tag\0point`. */
function ninePMounts(): Set<string> {
  const found = new Set<string>();
  try {
    for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
      const [source, point, type] = line.split(' ');
      if (type === '9p' && source && point) found.add(mountKey(source, point));
    }
  } catch {
    // no /proc: nothing known
  }
  return found;
}

/**
 * The 9p mounts found before any request (the VM's /init mounts the share at boot), and
 * those mount9p made since: a warm-pool VM then answers CreateSandbox without reading the
 * mount table (ms under TCG). Only this process mounts or unmounts in its mount namespace.
 */
const known = new Set<string>();

export function noteMounts(): void {
  for (const m of ninePMounts()) known.add(m);
}

/** Whether `dir` already has the 9p export `tag` mounted (the VM's /init mounts it at boot). */
function mountedAt(tag: string, dir: string): boolean {
  const key = mountKey(tag, pointOf(dir));
  return known.has(key) || ninePMounts().has(key);
}

/** Mounts the host's 9p export `tag` at `dir` (created when missing); one already there is kept (false). */
export async function mount9p(tag: string, dir: string, options: readonly string[] = NINEP_OPTIONS): Promise<boolean> {
  if (!/^[A-Za-z0-9_.-]{1,31}$/.test(tag)) throw new GuestError('InvalidArgument', `9p mount tag ${JSON.stringify(tag)} is not a valid tag`);
  if (mountedAt(tag, dir)) return false;
  mkdirSync(dir, { recursive: true });
  const mount = requireTool('mount', 'to mount the shared directory');
  try {
    await run(mount, ['-t', '9p', '-o', options.join(','), tag, dir]);
  } catch (err) {
    const text = ((err as { stderr?: string }).stderr ?? (err as Error).message).trim();
    throw new GuestError('FailedPrecondition', `cannot mount the shared directory ${tag} at ${dir}: ${text}`);
  }
  known.add(mountKey(tag, pointOf(dir)));
  return true;
}

export async function unmount(dir: string): Promise<void> {
  const umount = requireTool('umount', 'to unmount the shared directory');
  const point = pointOf(dir);
  for (const key of known) if (key.endsWith(`\u0000${point}`)) known.delete(key);
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
