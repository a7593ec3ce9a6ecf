// cgroup v1: the sandbox gets <own cgroup>/virtactors/<host>.<id>.<incarnation> in every writable hierarchy
// that carries a controller (memory, cpu, cpuacct, pids, freezer, ...).
import { chownSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { failedPrecondition } from '../../../bus/errors.js';
import { CGROUP_GROUP, cgroupName, CPU_PERIOD_US, type CgroupDriver, type CgroupOwner, type CgroupLimits, type SandboxCgroup } from './cgroup.js';
import type { Hierarchy } from './host.js';
import { assertSandboxDir, killPids, readText, removeIfUnused, removeSubtree, subtreePids, writeText } from './tree.js';

interface Member {
  hierarchy: Hierarchy;
  dir: string;
}

const has = (m: Member, controller: string) => m.hierarchy.controllers.includes(controller);

/** A new cpuset cgroup starts with no cpus and no memory nodes; it gets its parent's. */
function initCpuset(dir: string): void {
  for (const file of ['cpuset.cpus', 'cpuset.mems']) {
    if (readText(join(dir, file)).trim()) continue;
    writeText(join(dir, file), readText(join(dirname(dir), file)).trim());
  }
}

function makeDir(dir: string, cpuset: boolean): void {
  try {
    mkdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  if (cpuset) initCpuset(dir);
}

class V1Cgroup implements SandboxCgroup {
  constructor(
    private readonly members: Member[],
    private readonly name: string,
  ) {}

  readonly version = 1 as const;

  get dirs(): string[] {
    return this.members.map((m) => m.dir);
  }

  get memoryDir(): string | undefined {
    return this.members.find((m) => has(m, 'memory'))?.dir;
  }

  get procsFiles(): string[] {
    return this.members.map((m) => join(m.dir, 'cgroup.procs'));
  }

  async pids(): Promise<number[]> {
    return subtreePids(this.dirs);
  }

  private freezer(): Member | undefined {
    return this.members.find((m) => has(m, 'freezer'));
  }

  async freeze(): Promise<void> {
    const f = this.freezer();
    if (!f) throw failedPrecondition('this host has no writable freezer cgroup');
    writeText(join(f.dir, 'freezer.state'), 'FROZEN');
    // FREEZING until every task has stopped.
    for (let i = 0; readText(join(f.dir, 'freezer.state')).trim() !== 'FROZEN'; i++) {
      await sleep(i < 10 ? 1 : 10);
      if (i > 500) throw new Error(`cgroup ${f.dir} did not freeze`);
    }
  }

  async thaw(): Promise<void> {
    const f = this.freezer();
    if (f) writeText(join(f.dir, 'freezer.state'), 'THAWED');
  }

  delegate(uid: number, gid: number): void {
    for (const dir of this.dirs) for (const path of [dir, join(dir, 'cgroup.procs'), join(dir, 'tasks')]) chownSync(path, uid, gid);
  }

  async destroy(): Promise<void> {
    for (const dir of this.dirs) assertSandboxDir(dir, CGROUP_GROUP, this.name);
    const freezer = this.freezer();
    // Frozen, the leftovers cannot fork while they are being killed.
    for (let round = 0; ; round++) {
      const pids = await this.pids();
      if (pids.length === 0) break;
      if (round > 50) throw new Error(`processes ${pids.join(' ')} survive in the sandbox cgroup ${this.name}`);
      if (freezer) await this.freeze().catch(() => {});
      killPids(pids);
      if (freezer) await this.thaw().catch(() => {});
      await sleep(round < 5 ? 1 : 10);
    }
    for (const m of this.members) {
      await removeSubtree(m.dir);
      removeIfUnused(dirname(m.dir));
    }
  }
}

export class CgroupV1Driver implements CgroupDriver {
  readonly version = 1 as const;

  constructor(private readonly hierarchies: readonly Hierarchy[]) {}

  open(owner: CgroupOwner): SandboxCgroup {
    const name = cgroupName(owner);
    const members = this.hierarchies.map((hierarchy) => ({ hierarchy, dir: join(hierarchy.own, CGROUP_GROUP, name) }));
    return new V1Cgroup(members, name);
  }

  private member(cg: SandboxCgroup, controller: string): string {
    const dir = this.hierarchies.findIndex((h) => h.controllers.includes(controller));
    if (dir < 0) throw failedPrecondition(`cannot apply the ${controller} limit: this host has no writable ${controller} cgroup`);
    return cg.dirs[dir]!;
  }

  async create(owner: CgroupOwner, limits: CgroupLimits): Promise<SandboxCgroup> {
    const cg = this.open(owner);
    const targets: [string, string][] = [];
    if (limits.memoryBytes !== undefined) targets.push([join(this.member(cg, 'memory'), 'memory.limit_in_bytes'), String(limits.memoryBytes)]);
    if (limits.pidsMax !== undefined) targets.push([join(this.member(cg, 'pids'), 'pids.max'), String(limits.pidsMax)]);
    else if (limits.defaultPidsMax !== undefined && this.hierarchies.some((h) => h.controllers.includes('pids'))) {
      targets.push([join(this.member(cg, 'pids'), 'pids.max'), String(limits.defaultPidsMax)]);
    }
    if (limits.cpus !== undefined) {
      const cpu = this.member(cg, 'cpu');
      targets.push([join(cpu, 'cpu.cfs_period_us'), String(CPU_PERIOD_US)]);
      targets.push([join(cpu, 'cpu.cfs_quota_us'), String(Math.round(limits.cpus * CPU_PERIOD_US))]);
    }
    const make = (h: Hierarchy, dir: string) => {
      const cpuset = h.controllers.includes('cpuset');
      // Another sandbox's shutdown may remove the shared parent between the two mkdirs.
      for (let attempt = 0; ; attempt++) {
        try {
          makeDir(dirname(dir), cpuset);
          makeDir(dir, cpuset);
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 5) throw err;
        }
      }
    };
    try {
      this.hierarchies.forEach((h, i) => make(h, cg.dirs[i]!));
      for (const [file, value] of targets) writeText(file, value);
    } catch (err) {
      await cg.destroy().catch(() => {});
      throw err;
    }
    return cg;
  }
}
