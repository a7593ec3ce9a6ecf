// cgroup v1: one directory per controller hierarchy (memory, cpu, cpuacct, pids, freezer,
// blkio, cpuset, hugetlb, and the ones only an OCI runtime uses), each below the guest's own
// cgroup in that hierarchy.
import { readdirSync } from 'node:fs';
import { emptyMemory, emptyStats, type BlkioEntry, type CgroupDriver, type CgroupStats, type ContainerCgroup, type MemoryCounters, type Resources } from './types.js';
import { makeDir, read, readKeyed, readNumber, removeDir, until, write } from './files.js';

/** The controllers a container's limits, stats and freezer use. */
export const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'freezer', 'blkio', 'cpuset', 'hugetlb'];
/**
 * The rest, made only when runc runs the containers: runc joins a container to every
 * controller (devices it requires), and its cgroup must be the sandbox's child in each.
 * Each cgroup a container joins costs its start time (about 10 ms for these six through
 * hyperstart, where the create is on the start path), so crun's containers skip them.
 */
export const V1_RUNC_CONTROLLERS = ['devices', 'net_cls', 'net_prio', 'perf_event', 'rdma', 'misc'];

/** One writable hierarchy and the guest's own cgroup directory in it. */
export interface V1Hierarchy {
  controllers: string[];
  /** The guest's own cgroup directory in this hierarchy (the parent of the groups). */
  parent: string;
}

const USER_HZ_NS = 10_000_000;
/** v1 reports "no limit" as a page-rounded 2^63; anything this large is unlimited. */
const UNLIMITED = 2 ** 62;

const limitOf = (file: string) => {
  const n = readNumber(file);
  return n >= UNLIMITED ? 0 : n;
};

function initCpuset(dir: string, parent: string): void {
  for (const file of ['cpuset.cpus', 'cpuset.mems']) {
    if (read(`${dir}/${file}`)?.trim()) continue;
    write(`${dir}/${file}`, (read(`${parent}/${file}`) ?? '').trim());
  }
}

function blkio(file: string): BlkioEntry[] {
  const out: BlkioEntry[] = [];
  for (const line of (read(file) ?? '').split('\n')) {
    const m = /^(\d+):(\d+) (\S+) (\d+)$/.exec(line);
    if (m) out.push({ major: Number(m[1]), minor: Number(m[2]), op: m[3]!, value: Number(m[4]) });
  }
  return out;
}

class V1Cgroup implements ContainerCgroup {
  readonly procsFiles: string[];

  constructor(
    private readonly dirs: Map<string, string>,
    /**
     * `<group>/<name>`: relative, so runc resolves it against its own cgroup in each
     * hierarchy, the guest's (which may sit at a different path in each).
     */
    readonly ociPath: string,
  ) {
    this.procsFiles = [...new Set(dirs.values())].map((d) => `${d}/cgroup.procs`);
  }

  covers(controllers: string): boolean {
    return controllers.split(',').some((c) => this.dirs.has(c));
  }

  private dir(controller: string): string | undefined {
    return this.dirs.get(controller);
  }

  private need(controller: string): string {
    const d = this.dir(controller);
    if (!d) throw new Error(`this guest has no writable ${controller} cgroup`);
    return d;
  }

  get canFreeze(): boolean {
    return this.dirs.has('freezer');
  }

  pids(): number[] {
    const dir = this.dir('pids') ?? this.dir('freezer') ?? this.dirs.values().next().value;
    if (!dir) return [];
    return (read(`${dir}/cgroup.procs`) ?? '').split('\n').filter(Boolean).map(Number);
  }

  stats(): CgroupStats {
    const s = emptyStats();
    const acct = this.dir('cpuacct');
    if (acct) {
      s.cpu.totalNs = readNumber(`${acct}/cpuacct.usage`);
      s.cpu.perCpuNs = (read(`${acct}/cpuacct.usage_percpu`) ?? '').trim().split(/\s+/).filter(Boolean).map(Number);
      const t = readKeyed(`${acct}/cpuacct.stat`);
      s.cpu.userNs = (t.user ?? 0) * USER_HZ_NS;
      s.cpu.kernelNs = (t.system ?? 0) * USER_HZ_NS;
    }
    const cpu = this.dir('cpu');
    if (cpu) {
      const t = readKeyed(`${cpu}/cpu.stat`);
      s.cpu.periods = t.nr_periods ?? 0;
      s.cpu.throttledPeriods = t.nr_throttled ?? 0;
      s.cpu.throttledNs = t.throttled_time ?? 0;
    }
    const mem = this.dir('memory');
    if (mem) {
      const counters = (prefix: string): MemoryCounters => {
        if (read(`${mem}/${prefix}.usage_in_bytes`) === undefined) return emptyMemory();
        return {
          usage: readNumber(`${mem}/${prefix}.usage_in_bytes`),
          maxUsage: readNumber(`${mem}/${prefix}.max_usage_in_bytes`),
          failcnt: readNumber(`${mem}/${prefix}.failcnt`),
          limit: limitOf(`${mem}/${prefix}.limit_in_bytes`),
        };
      };
      s.memory.usage = counters('memory');
      s.memory.swap = counters('memory.memsw');
      s.memory.kernel = counters('memory.kmem');
      s.memory.stats = readKeyed(`${mem}/memory.stat`);
      s.memory.cache = s.memory.stats.cache ?? 0;
      s.memory.useHierarchy = readNumber(`${mem}/memory.use_hierarchy`) === 1;
      const oomKills = readKeyed(`${mem}/memory.oom_control`).oom_kill;
      if (oomKills !== undefined) s.memory.oomKills = oomKills;
    }
    const pids = this.dir('pids');
    if (pids) s.pids = { current: readNumber(`${pids}/pids.current`), limit: readNumber(`${pids}/pids.max`) };
    const io = this.dir('blkio');
    if (io) {
      const pick = (name: string) => blkio(`${io}/blkio.throttle.${name}`).length ? blkio(`${io}/blkio.throttle.${name}`) : blkio(`${io}/blkio.${name}`);
      s.blkio = { serviceBytes: pick('io_service_bytes_recursive'), serviced: pick('io_serviced_recursive') };
    }
    const huge = this.dir('hugetlb');
    if (huge) {
      for (const f of readdirSync(huge)) {
        const m = /^hugetlb\.(.+)\.usage_in_bytes$/.exec(f);
        if (!m) continue;
        const size = m[1]!;
        s.hugetlb[size] = {
          usage: readNumber(`${huge}/${f}`),
          maxUsage: readNumber(`${huge}/hugetlb.${size}.max_usage_in_bytes`),
          failcnt: readNumber(`${huge}/hugetlb.${size}.failcnt`),
        };
      }
    }
    return s;
  }

  update(r: Resources): void {
    const m = r.memory;
    if (m && (m.limit || m.swap || m.reservation || m.swappiness !== undefined)) {
      const dir = this.need('memory');
      const limit = m.limit ? () => write(`${dir}/memory.limit_in_bytes`, String(m.limit)) : undefined;
      const swap = m.swap ? () => write(`${dir}/memory.memsw.limit_in_bytes`, String(m.swap)) : undefined;
      // memory ≤ memory+swap at every step: which goes first depends on the direction.
      try {
        limit?.();
        swap?.();
      } catch {
        swap?.();
        limit?.();
      }
      if (m.reservation) write(`${dir}/memory.soft_limit_in_bytes`, String(m.reservation));
      if (m.swappiness !== undefined && m.swappiness <= 100) write(`${dir}/memory.swappiness`, String(m.swappiness));
    }
    const c = r.cpu;
    if (c) {
      if (c.shares || c.period || c.quota) {
        const dir = this.need('cpu');
        if (c.shares) write(`${dir}/cpu.shares`, String(c.shares));
        if (c.period) write(`${dir}/cpu.cfs_period_us`, String(c.period));
        if (c.quota) write(`${dir}/cpu.cfs_quota_us`, String(c.quota));
      }
      if (c.cpus) write(`${this.need('cpuset')}/cpuset.cpus`, c.cpus);
      if (c.mems) write(`${this.need('cpuset')}/cpuset.mems`, c.mems);
    }
    if (r.pids?.limit) write(`${this.need('pids')}/pids.max`, r.pids.limit < 0 ? 'max' : String(r.pids.limit));
    if (r.blockIO?.weight) {
      const dir = this.need('blkio');
      const file = read(`${dir}/blkio.weight`) !== undefined ? 'blkio.weight' : 'blkio.bfq.weight';
      write(`${dir}/${file}`, String(r.blockIO.weight));
    }
  }

  async freeze(): Promise<void> {
    await this.setFreezer('FROZEN');
  }

  async thaw(): Promise<void> {
    await this.setFreezer('THAWED');
  }

  private async setFreezer(state: 'FROZEN' | 'THAWED'): Promise<void> {
    const file = `${this.need('freezer')}/freezer.state`;
    write(file, state);
    // FREEZING lasts until every task stopped; re-writing FROZEN retries stragglers.
    const ok = await until(() => {
      const now = read(file)?.trim();
      if (now !== state && state === 'FROZEN') write(file, state);
      return now === state;
    }, 5_000);
    if (!ok) throw new Error(`the freezer cgroup did not reach ${state}`);
  }

  async destroy(): Promise<void> {
    for (const dir of new Set(this.dirs.values())) await removeDir(dir);
  }
}

export class CgroupV1Driver implements CgroupDriver {
  readonly version = 'v1' as const;

  constructor(private readonly hierarchies: V1Hierarchy[]) {}

  create(group: string, name: string): ContainerCgroup {
    const dirs = new Map<string, string>();
    for (const h of this.hierarchies) {
      const cpuset = h.controllers.includes('cpuset');
      const g = `${h.parent}/${group}`;
      makeDir(g);
      if (cpuset) initCpuset(g, h.parent);
      const dir = `${g}/${name}`;
      makeDir(dir);
      if (cpuset) initCpuset(dir, g);
      for (const c of h.controllers) dirs.set(c, dir);
    }
    return new V1Cgroup(dirs, `${group}/${name}`);
  }

  async removeGroup(group: string): Promise<void> {
    for (const h of this.hierarchies) await removeDir(`${h.parent}/${group}`);
  }
}
