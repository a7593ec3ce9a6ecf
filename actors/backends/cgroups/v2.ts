// cgroup v2: the sandbox gets <own cgroup>/virtactors/<host>.<id>.<incarnation> in the unified tree, with the
// controllers the runtime's cgroup can hand down enabled on the way.
import { chownSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { failedPrecondition } from '../../../bus/errors.js';
import { CGROUP_GROUP, cgroupName, CPU_PERIOD_US, type CgroupDriver, type CgroupOwner, type CgroupLimits, type SandboxCgroup } from './cgroup.js';
import type { Hierarchy } from './host.js';
import { assertSandboxDir, killPids, readText, removeIfUnused, removeSubtree, subtreePids, tryWrite, writeText } from './tree.js';

function readWords(file: string): string[] {
  try {
    return readText(file).split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}

/** Waits until a key of a flat-keyed file (cgroup.events) has a value. */
async function waitFor(file: string, key: string, value: string): Promise<void> {
  for (let i = 0; ; i++) {
    let text = '';
    try {
      text = readText(file);
    } catch {
      // Gone: nothing left to wait for.
    }
    if (!text || text.split('\n').includes(`${key} ${value}`)) return;
    if (i > 500) throw new Error(`${file}: ${key} did not become ${value}`);
    await sleep(i < 10 ? 1 : 10);
  }
}

class V2Cgroup implements SandboxCgroup {
  constructor(
    readonly dir: string,
    private readonly name: string,
  ) {}

  readonly version = 2 as const;

  get dirs(): string[] {
    return [this.dir];
  }

  get memoryDir(): string {
    return this.dir;
  }

  get procsFiles(): string[] {
    return [join(this.dir, 'cgroup.procs')];
  }

  async pids(): Promise<number[]> {
    return subtreePids(this.dirs);
  }

  async freeze(): Promise<void> {
    writeText(join(this.dir, 'cgroup.freeze'), '1');
    await waitFor(join(this.dir, 'cgroup.events'), 'frozen', '1');
  }

  async thaw(): Promise<void> {
    writeText(join(this.dir, 'cgroup.freeze'), '0');
  }

  delegate(uid: number, gid: number): void {
    // The files cgroup v2 delegation names (cgroup-v2.rst): the directory, procs, threads, subtree_control.
    for (const name of ['', 'cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control']) chownSync(join(this.dir, name), uid, gid);
  }

  async destroy(): Promise<void> {
    assertSandboxDir(this.dir, CGROUP_GROUP, this.name);
    const canKill = existsSync(join(this.dir, 'cgroup.kill'));
    for (let round = 0; ; round++) {
      const pids = await this.pids();
      if (pids.length === 0) break;
      if (round > 50) throw new Error(`processes ${pids.join(' ')} survive in the sandbox cgroup ${this.name}`);
      // cgroup.kill (Linux 5.14) kills the subtree atomically; before it, freeze and kill.
      if (canKill) {
        writeText(join(this.dir, 'cgroup.kill'), '1');
      } else {
        await this.freeze().catch(() => {});
        killPids(pids);
        await this.thaw().catch(() => {});
      }
      await sleep(round < 5 ? 1 : 10);
    }
    await removeSubtree(this.dir);
    removeIfUnused(dirname(this.dir));
  }
}

export class CgroupV2Driver implements CgroupDriver {
  readonly version = 2 as const;
  private warned = false;

  constructor(
    private readonly hierarchy: Hierarchy,
    private readonly log: Logger,
  ) {}

  open(owner: CgroupOwner): SandboxCgroup {
    const name = cgroupName(owner);
    return new V2Cgroup(join(this.hierarchy.own, CGROUP_GROUP, name), name);
  }

  /**
   * Hands the controllers down from the runtime's cgroup to the sandbox cgroups. The kernel
   * refuses while the runtime's cgroup holds processes and is not the root ("no internal
   * processes"); then sandboxes are still grouped, accounted and killable, but unlimited.
   */
  private enableControllers(group: string): Set<string> {
    const wanted = readWords(join(this.hierarchy.own, 'cgroup.controllers'));
    const enable = wanted.map((c) => `+${c}`).join(' ');
    if (enable && tryWrite(join(this.hierarchy.own, 'cgroup.subtree_control'), enable)) {
      tryWrite(join(group, 'cgroup.subtree_control'), enable);
    }
    const enabled = new Set(readWords(join(group, 'cgroup.subtree_control')));
    const missing = wanted.filter((c) => !enabled.has(c));
    if (missing.length > 0 && !this.warned) {
      this.warned = true;
      this.log.warn({ cgroup: this.hierarchy.own, missing }, 'cgroup v2 controllers cannot be enabled for sandboxes; their limits are not available');
    }
    return enabled;
  }

  async create(owner: CgroupOwner, limits: CgroupLimits): Promise<SandboxCgroup> {
    const cg = this.open(owner) as V2Cgroup;
    const group = dirname(cg.dir);
    mkdirSync(group, { recursive: true });
    const enabled = this.enableControllers(group);
    const need = (controller: string) => {
      if (!enabled.has(controller)) throw failedPrecondition(`cannot apply the ${controller} limit: the ${controller} controller is not enabled for sandbox cgroups`);
    };
    const writes: [string, string][] = [];
    if (limits.memoryBytes !== undefined) {
      need('memory');
      writes.push(['memory.max', String(limits.memoryBytes)]);
    }
    if (limits.pidsMax !== undefined) {
      need('pids');
      writes.push(['pids.max', String(limits.pidsMax)]);
    } else if (limits.defaultPidsMax !== undefined && enabled.has('pids')) {
      writes.push(['pids.max', String(limits.defaultPidsMax)]);
    }
    if (limits.cpus !== undefined) {
      need('cpu');
      writes.push(['cpu.max', `${Math.round(limits.cpus * CPU_PERIOD_US)} ${CPU_PERIOD_US}`]);
    }
    mkdirSync(cg.dir, { recursive: true });
    try {
      for (const [file, value] of writes) writeText(join(cg.dir, file), value);
    } catch (err) {
      await cg.destroy().catch(() => {});
      throw err;
    }
    return cg;
  }
}
