// Picks the cgroup driver for this host: v1 where controllers are mounted as v1
// hierarchies (hybrid hosts included), v2 on unified-only hosts, none when nothing is
// writable (an unprivileged runtime, a read-only /sys/fs/cgroup).
import type { Logger } from 'pino';
import type { CgroupDriver } from './cgroup.js';
import { readHostCgroups, type HostCgroups } from './host.js';
import { CgroupV1Driver } from './v1.js';
import { CgroupV2Driver } from './v2.js';

export * from './cgroup.js';
export { readHostCgroups, type HostCgroups, type Hierarchy } from './host.js';
export { CgroupV1Driver } from './v1.js';
export { CgroupV2Driver } from './v2.js';
export { memoryUsage, OomWatch, oomCounters, type OomCounter } from './oom.js';

export function chooseCgroupDriver(host: HostCgroups, log: Logger): CgroupDriver | undefined {
  if (host.v1.length > 0) {
    const usable = host.v1.filter((h) => h.writable);
    const skipped = host.v1.filter((h) => !h.writable).map((h) => h.controllers.join(','));
    if (skipped.length > 0) log.warn({ skipped }, 'some cgroup v1 hierarchies are not writable; sandboxes are not placed in them');
    if (usable.length > 0) return new CgroupV1Driver(usable);
  } else if (host.v2?.writable) {
    return new CgroupV2Driver(host.v2, log);
  }
  log.warn('no writable cgroups: sandboxes run without a cgroup of their own (no limits, no accounting)');
  return undefined;
}

let detected: Promise<CgroupDriver | undefined> | undefined;

/** The host's driver, detected once per process. */
export function hostCgroupDriver(log: Logger): Promise<CgroupDriver | undefined> {
  detected ??= readHostCgroups().then(
    (host) => chooseCgroupDriver(host, log),
    (err) => {
      log.warn({ err }, 'cannot read the cgroup layout; sandboxes run without a cgroup of their own');
      return undefined;
    },
  );
  return detected;
}
