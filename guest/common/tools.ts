// The guest's own programs the supervisor runs around a container process: sh joins the
// cgroups, nsenter enters the reaper's pid namespace, unshare changes root and user,
// script gives a terminal, stty resizes it, ps lists processes. Looked up once, by
// absolute path, so a container's own PATH (or lack of one) never matters.
import { accessSync, constants } from 'node:fs';

const DIRS = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin'];

export type ToolName = 'sh' | 'nsenter' | 'unshare' | 'script' | 'stty' | 'ps' | 'mount';

const found = new Map<ToolName, string | null>();

export function findTool(name: ToolName): string | undefined {
  let path = found.get(name);
  if (path === undefined) {
    path = null;
    for (const dir of DIRS) {
      try {
        accessSync(`${dir}/${name}`, constants.X_OK);
        path = `${dir}/${name}`;
        break;
      } catch {
        // next
      }
    }
    found.set(name, path);
  }
  return path ?? undefined;
}

export function requireTool(name: ToolName, why: string): string {
  const path = findTool(name);
  if (!path) throw new Error(`${name} is not installed in the guest: it is needed ${why}`);
  return path;
}
