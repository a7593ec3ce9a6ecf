// Picks the cgroup driver for this guest: v1 where controllers are mounted as v1
// hierarchies (hybrid hosts included), v2 on unified-only hosts, none when nothing is
// writable. Container cgroups go below the guest's own cgroup, so they count against the
// sandbox's limits.
import { accessSync, constants } from 'node:fs';
import type { GuestLog } from '../log.js';
import { cgroupMounts, dirOf, ownCgroups } from './files.js';
import { CgroupV1Driver, V1_CONTROLLERS, V1_RUNC_CONTROLLERS, type V1Hierarchy } from './v1.js';
import { CgroupV2Driver } from './v2.js';
import type { CgroupDriver } from './types.js';

export type { CgroupDriver, CgroupStats, ContainerCgroup, Resources, MemoryCounters, BlkioEntry } from './types.js';
export { CgroupV1Driver, CgroupV2Driver };

export type CgroupChoice = 'auto' | 'v1' | 'v2' | 'none';

const writable = (dir: string) => {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
};

function v1Hierarchies(wanted: readonly string[]): V1Hierarchy[] {
  const own = ownCgroups();
  const out: V1Hierarchy[] = [];
  for (const m of cgroupMounts()) {
    if (m.version !== 1 || m.readonly) continue;
    const controllers = m.controllers.filter((c) => wanted.includes(c));
    if (controllers.length === 0) continue;
    const path = [...own.entries()].find(([k]) => k.split(',').sort().join(',') === [...m.controllers].sort().join(','))?.[1];
    if (path === undefined) continue;
    const parent = dirOf(m, path);
    if (writable(parent)) out.push({ controllers, parent });
  }
  return out;
}

function v2Parent(): string | undefined {
  const path = ownCgroups().get('');
  if (path === undefined) return undefined;
  // The unified mount carrying controllers; in a hybrid layout the empty one is still usable.
  const mounts = cgroupMounts().filter((m) => m.version === 2 && !m.readonly);
  const mount = mounts.find((m) => m.dir === '/sys/fs/cgroup') ?? mounts[0];
  if (!mount) return undefined;
  const parent = dirOf(mount, path);
  return writable(parent) ? parent : undefined;
}

/** `forRunc`: containers also get a cgroup in every other v1 controller (runc joins them all). */
export function detectCgroups(choice: CgroupChoice = 'auto', log?: GuestLog, opts: { forRunc?: boolean } = {}): CgroupDriver | undefined {
  if (choice === 'none') return undefined;
  const ownsParent = process.pid === 1;
  if (choice === 'v1' || choice === 'auto') {
    const hierarchies = v1Hierarchies(opts.forRunc ? [...V1_CONTROLLERS, ...V1_RUNC_CONTROLLERS] : V1_CONTROLLERS);
    if (hierarchies.length > 0) return new CgroupV1Driver(hierarchies);
    if (choice === 'v1') log?.warn('no writable cgroup v1 hierarchy');
  }
  if (choice === 'v2' || choice === 'auto') {
    const parent = v2Parent();
    if (parent) return new CgroupV2Driver(parent, ownsParent, log);
  }
  log?.info('no writable cgroups: containers get no limits, stats or freezer (pause falls back to SIGSTOP)');
  return undefined;
}
