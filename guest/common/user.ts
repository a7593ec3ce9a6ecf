// Who a process runs as: numeric ids, or names looked up in the container's own
// /etc/passwd and /etc/group (a rootfs has its own users).
import { readFileSync } from 'node:fs';
import { invalidArgument } from './errors.js';
import { resolveInRoot } from './paths.js';

export interface UserRef {
  uid?: number;
  gid?: number;
  /** A user name, resolved in the container's /etc/passwd (wins over uid). */
  name?: string;
  /** A group name, resolved in the container's /etc/group (wins over gid). */
  group?: string;
  additionalGids?: number[];
}

export interface Identity {
  uid: number;
  gid: number;
  additionalGids: number[];
}

const isId = (s: string) => /^\d+$/.test(s);

/** "uid", "uid:gid", "name", "name:group" (or "" for root). */
export function parseUser(user: string): UserRef {
  if (!user) return {};
  const [u = '', g] = user.split(':', 2);
  const ref: UserRef = {};
  if (u) {
    if (isId(u)) ref.uid = Number(u);
    else ref.name = u;
  }
  if (g !== undefined && g !== '') {
    if (isId(g)) ref.gid = Number(g);
    else ref.group = g;
  }
  return ref;
}

function readTable(root: string, file: string): string[][] {
  try {
    return readFileSync(resolveInRoot(root, file), 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split(':'));
  } catch {
    return [];
  }
}

/** The numeric identity of a user reference inside a root. */
export function resolveUser(ref: UserRef, root: string): Identity {
  let uid = ref.uid ?? 0;
  let gid = ref.gid;
  if (ref.name) {
    const entry = readTable(root, '/etc/passwd').find((f) => f[0] === ref.name);
    if (!entry) throw invalidArgument(`user ${ref.name} is not in /etc/passwd${root ? ` of ${root}` : ''}`);
    uid = Number(entry[2]);
    gid ??= Number(entry[3]);
  }
  if (ref.group) {
    const entry = readTable(root, '/etc/group').find((f) => f[0] === ref.group);
    if (!entry) throw invalidArgument(`group ${ref.group} is not in /etc/group${root ? ` of ${root}` : ''}`);
    gid = Number(entry[2]);
  }
  if (gid === undefined) {
    // A bare uid gets its passwd group when the rootfs knows it, else group 0.
    const entry = readTable(root, '/etc/passwd').find((f) => Number(f[2]) === uid);
    gid = entry ? Number(entry[3]) : 0;
  }
  if (!Number.isInteger(uid) || uid < 0 || !Number.isInteger(gid) || gid < 0) throw invalidArgument(`invalid user ${JSON.stringify(ref)}`);
  return { uid, gid, additionalGids: ref.additionalGids ?? [] };
}
