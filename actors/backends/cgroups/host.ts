// What cgroups this host has, and where this process sits in them: read once from
// /proc/self/mountinfo, /proc/self/cgroup and /proc/cgroups.
import { access, constants, readFile } from 'node:fs/promises';

export interface Hierarchy {
  /** Mount point of the hierarchy. */
  mount: string;
  /** Controllers bound to it (v1); those the unified tree offers (v2). */
  controllers: string[];
  /** Directory of the cgroup this process is in. */
  own: string;
  writable: boolean;
}

export interface HostCgroups {
  /** v1 hierarchies carrying at least one controller (named ones like name=systemd are left out). */
  v1: Hierarchy[];
  v2: Hierarchy | undefined;
}

interface Mount {
  root: string;
  mount: string;
  fstype: string;
  superOptions: string[];
}

function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const f = left.split(' ');
    const [fstype, , superOptions = ''] = right.split(' ');
    const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (f[3] && f[4] && fstype) mounts.push({ root: unescape(f[3]), mount: unescape(f[4]), fstype, superOptions: superOptions.split(',') });
  }
  return mounts;
}

/** /proc/self/cgroup: controller list ("" for v2) → path of this process. */
function parseOwnCgroups(text: string): Map<string, string> {
  const own = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (m) own.set(m[1]!, m[2]!);
  }
  return own;
}

/** The own cgroup's directory under a mount whose root may itself be a sub-path. */
function ownDir(mount: Mount, path: string | undefined): string {
  let rel = path ?? '/';
  if (mount.root !== '/' && (rel === mount.root || rel.startsWith(mount.root + '/'))) rel = rel.slice(mount.root.length);
  return (mount.mount + (rel === '/' ? '' : rel)).replace(/\/+$/, '') || '/';
}

async function writable(dir: string): Promise<boolean> {
  return access(dir, constants.W_OK).then(
    () => true,
    () => false,
  );
}

export async function readHostCgroups(): Promise<HostCgroups> {
  const [mountinfo, self, known] = await Promise.all([
    readFile('/proc/self/mountinfo', 'utf8'),
    readFile('/proc/self/cgroup', 'utf8').catch(() => ''),
    readFile('/proc/cgroups', 'utf8').catch(() => ''),
  ]);
  const controllerNames = new Set(
    known
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split('\t')[0]!),
  );
  const own = parseOwnCgroups(self);
  const mounts = parseMountinfo(mountinfo);
  const v1: Hierarchy[] = [];
  const seen = new Set<string>();
  for (const m of mounts.filter((m) => m.fstype === 'cgroup')) {
    const controllers = m.superOptions.filter((o) => controllerNames.has(o));
    const key = [...controllers].sort().join(',');
    // A hierarchy can be mounted more than once; the first mount is enough.
    if (controllers.length === 0 || seen.has(key)) continue;
    seen.add(key);
    const entry = [...own.entries()].find(([names]) => names.split(',').some((n) => controllers.includes(n)));
    const dir = ownDir(m, entry?.[1]);
    v1.push({ mount: m.mount, controllers, own: dir, writable: await writable(dir) });
  }
  let v2: Hierarchy | undefined;
  const unified = mounts.find((m) => m.fstype === 'cgroup2');
  if (unified) {
    const dir = ownDir(unified, own.get(''));
    const controllers = (await readFile(`${dir}/cgroup.controllers`, 'utf8').catch(() => '')).split(/\s+/).filter(Boolean);
    v2 = { mount: unified.mount, controllers, own: dir, writable: await writable(dir) };
  }
  return { v1, v2 };
}
