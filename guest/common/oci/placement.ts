// Where a runtime that places containers itself (runc) put one: the check that it stayed
// inside the sandbox's cgroups. In every hierarchy the container's init either left the
// guest's own cgroup for the container's (made by the supervisor, the sandbox's child), or
// stayed where the guest is; a move anywhere else is an escape.
import { readFileSync } from 'node:fs';
import { ownCgroups as cgroupsOf } from '../cgroups/files.js';
import type { ContainerCgroup } from '../cgroups/index.js';

function listed(procsFile: string, pid: number): boolean {
  try {
    return readFileSync(procsFile, 'utf8').split('\n').includes(String(pid));
  } catch {
    return false;
  }
}

/** Why the placement of `pid` is wrong; undefined when it is in the container's cgroup everywhere the guest has one, and nowhere else. */
export function misplacement(pid: number, cgroup: ContainerCgroup | undefined, guest = cgroupsOf('self')): string | undefined {
  for (const file of cgroup?.procsFiles ?? []) if (!listed(file, pid)) return `it is not in ${file.slice(0, -'/cgroup.procs'.length)}`;
  for (const [controllers, path] of cgroupsOf(pid)) {
    if (guest.get(controllers) === path || cgroup?.covers(controllers)) continue;
    return `it was moved to ${path} in the ${controllers || 'unified'} hierarchy, where the sandbox has no cgroup of the container's`;
  }
  return undefined;
}
