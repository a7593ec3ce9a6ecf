// Paths inside a container root, resolved the way the kernel will see them after chroot:
// an absolute symlink in the rootfs points into the rootfs, never to the guest's files.
import { accessSync, constants, lstatSync, readlinkSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { invalidArgument } from './errors.js';

const MAX_LINKS = 40;
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const isOwnRoot = (root: string) => root === '' || root === '/';

/** Where `path` (absolute, as the container sees it) is in the guest's own filesystem, following symlinks within `root`. */
export function resolveInRoot(root: string, path: string): string {
  if (isOwnRoot(root)) return path;
  const base = root.replace(/\/+$/, '');
  const done: string[] = [];
  const todo = path.split('/').filter(Boolean);
  let links = 0;
  while (todo.length > 0) {
    const part = todo.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const host = `${base}/${[...done, part].join('/')}`;
    let link: string | undefined;
    try {
      if (lstatSync(host).isSymbolicLink()) link = readlinkSync(host);
    } catch {
      // Missing: the rest stays as written.
    }
    if (link === undefined) {
      done.push(part);
      continue;
    }
    if (++links > MAX_LINKS) throw invalidArgument(`too many symbolic links resolving ${path} in ${root}`);
    if (link.startsWith('/')) done.length = 0;
    todo.unshift(...link.split('/').filter(Boolean));
  }
  return `${base}/${done.join('/')}`;
}

function isExecutableFile(hostPath: string): boolean {
  try {
    if (!statSync(hostPath).isFile()) return false;
    accessSync(hostPath, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Finds the program of a process the way execvp would inside the container: a name with a
 * slash is taken as is (relative to cwd), anything else is searched in the process's PATH.
 * Returns the path as the container sees it.
 */
export function findExecutable(name: string, env: readonly string[], root: string, cwd: string): string {
  if (!name) throw invalidArgument('the process has no program: args is empty');
  if (name.includes('/')) {
    const inContainer = posix.normalize(name.startsWith('/') ? name : posix.join(cwd, name));
    if (!isExecutableFile(resolveInRoot(root, inContainer))) {
      throw invalidArgument(`${name}: no such executable file${isOwnRoot(root) ? '' : ` in ${root}`}`);
    }
    return inContainer;
  }
  const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? DEFAULT_PATH;
  for (const dir of pathVar.split(':')) {
    if (!dir.startsWith('/')) continue;
    const candidate = `${dir.replace(/\/+$/, '')}/${name}`;
    if (isExecutableFile(resolveInRoot(root, candidate))) return candidate;
  }
  throw invalidArgument(`${name}: executable file not found in $PATH${isOwnRoot(root) ? '' : ` of ${root}`}`);
}

/** Checks that a working directory exists inside the container. */
export function checkDirectory(root: string, cwd: string): void {
  try {
    if (statSync(resolveInRoot(root, cwd)).isDirectory()) return;
  } catch {
    // below
  }
  throw invalidArgument(`working directory ${cwd} does not exist${isOwnRoot(root) ? '' : ` in ${root}`}`);
}
