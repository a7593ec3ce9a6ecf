// A sandbox's shared directory on the host, where container rootfs are staged for the
// guest as virtcontainers did: `<shared dir>/<cid>/rootfs`. A VM sees the directory over
// 9p, so the rootfs is bind-mounted there (9p would show a symlink as a link to a path the
// VM does not have); a guest that shares the host's filesystem gets a symlink. Only what
// is staged here is ever removed, and a directory is removed only once nothing is mounted
// on it.
import { execFile } from 'node:child_process';
import { lstatSync, mkdirSync, readFileSync, rmdirSync, statSync, symlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { failedPrecondition, invalidArgument } from '../bus/errors.js';

const run = promisify(execFile);

export interface GuestShare {
  /** The host directory the guest sees as its shared root. */
  hostDir: string;
  /** Its 9p mount tag in the guest; none when the guest shares the host's filesystem. */
  tag?: string;
  /** Stage by bind mount (a VM) rather than by symlink. */
  bind: boolean;
}

/** Where a container's rootfs is staged, relative to the shared root: `<cid>/rootfs`. */
export const ROOTFS_DIR = 'rootfs';

const unescapeMount = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Mount points at or below `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.replace(/\/+$/, '');
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => !!p)
    .map(unescapeMount)
    .filter((p) => p === prefix || p.startsWith(`${prefix}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

async function unmount(point: string): Promise<void> {
  await run('umount', ['-l', point]).catch((err: { stderr?: string; message: string }) => {
    throw failedPrecondition(`cannot unmount ${point}: ${(err.stderr ?? err.message).trim()}`);
  });
}

/** Unmounts everything below dir (what was staged there); logs what could not be. */
export async function unmountAll(dir: string, log: Logger): Promise<void> {
  for (const point of mountsUnder(dir)) await unmount(point).catch((err) => log.error({ err, point }, 'unmount failed'));
}

/** Stages a container's rootfs (a host directory) at `<shared dir>/<cid>/rootfs`. */
export async function stageRootfs(share: GuestShare, cid: string, rootfs: string): Promise<void> {
  let isDir = false;
  try {
    isDir = statSync(rootfs).isDirectory();
  } catch {
    // below
  }
  if (!isDir) throw invalidArgument(`container ${cid}: rootfs ${rootfs} is not a directory on this host`);
  await unstageRootfs(share, cid);
  const dir = join(share.hostDir, cid);
  const target = join(dir, ROOTFS_DIR);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  if (!share.bind) {
    symlinkSync(rootfs, target);
    return;
  }
  if (process.getuid?.() !== 0) throw failedPrecondition(`container ${cid}: staging a rootfs for a VM takes a bind mount, which needs root`);
  mkdirSync(target, { mode: 0o755 });
  await run('mount', ['--bind', rootfs, target]).catch((err: { stderr?: string; message: string }) => {
    rmdirSync(target);
    throw failedPrecondition(`container ${cid}: cannot bind-mount its rootfs into the shared directory: ${(err.stderr ?? err.message).trim()}`);
  });
}

/** Undoes stageRootfs; nothing else in the shared directory is touched. */
export async function unstageRootfs(share: GuestShare, cid: string): Promise<void> {
  const dir = join(share.hostDir, cid);
  const target = join(dir, ROOTFS_DIR);
  for (const point of mountsUnder(target)) await unmount(point);
  try {
    const st = lstatSync(target);
    if (st.isSymbolicLink()) unlinkSync(target);
    else if (st.isDirectory()) rmdirSync(target);
  } catch {
    // not staged
  }
  try {
    rmdirSync(dir);
  } catch {
    // absent, or holding something not ours
  }
}
