// cgroup v2: one directory per container below the guest's own cgroup in the unified
// hierarchy. Controllers are enabled down the path where the kernel allows it; the
// unified hierarchy forbids processes in a cgroup that hands controllers to its children,
// so a guest running as PID 1 moves its own processes into a leaf first.
import { emptyMemory, emptyStats, type BlkioEntry, type CgroupDriver, type CgroupStats, type ContainerCgroup, type Resources } from './types.js';
import { makeDir, read, readKeyed, readNumber, removeDir, until, write } from './files.js';
import type { GuestLog } from '../log.js';

const WANTED = ['cpu', 'cpuset', 'io', 'memory', 'pids', 'hugetlb'];
const AGENT_LEAF = 'agent';

const words = (text: string | undefined) => (text ?? '').trim().split(/\s+/).filter(Boolean);

/** OCI cpu shares (2..262144) to a v2 weight (1..10000), as runc converts them. */
export const sharesToWeight = (shares: number) => Math.max(1, Math.min(10_000, Math.round(1 + ((shares - 2) * 9999) / 262142)));
/** OCI blkio weight (10..1000) to a v2 io weight (1..10000). */
export const blkioToIoWeight = (weight: number) => Math.max(1, Math.min(10_000, Math.round(1 + ((weight - 10) * 9999) / 990)));

function ioStat(file: string): { serviceBytes: BlkioEntry[]; serviced: BlkioEntry[] } {
  const serviceBytes: BlkioEntry[] = [];
  const serviced: BlkioEntry[] = [];
  for (const line of (read(file) ?? '').split('\n')) {
    const [dev, ...kv] = line.split(' ');
    const m = /^(\d+):(\d+)$/.exec(dev ?? '');
    if (!m) continue;
    const major = Number(m[1]);
    const minor = Number(m[2]);
    const v: Record<string, number> = {};
    for (const pair of kv) {
      const [k, n] = pair.split('=');
      if (k) v[k] = Number(n);
    }
    serviceBytes.push({ major, minor, op: 'Read', value: v.rbytes ?? 0 }, { major, minor, op: 'Write', value: v.wbytes ?? 0 });
    serviced.push({ major, minor, op: 'Read', value: v.rios ?? 0 }, { major, minor, op: 'Write', value: v.wios ?? 0 });
  }
  return { serviceBytes, serviced };
}

/** Where runc (and the OCI runtimes) expect the unified hierarchy. */
const UNIFIED_MOUNT = '/sys/fs/cgroup';

class V2Cgroup implements ContainerCgroup {
  readonly procsFiles: string[];
  /** Absolute below the unified mount: one hierarchy, one path. */
  readonly ociPath: string | undefined;

  constructor(private readonly dir: string) {
    this.procsFiles = [`${dir}/cgroup.procs`];
    this.ociPath = dir.startsWith(`${UNIFIED_MOUNT}/`) ? dir.slice(UNIFIED_MOUNT.length) : undefined;
  }

  covers(controllers: string): boolean {
    return controllers === '';
  }

  get canFreeze(): boolean {
    return read(`${this.dir}/cgroup.freeze`) !== undefined;
  }

  pids(): number[] {
    return (read(`${this.dir}/cgroup.procs`) ?? '').split('\n').filter(Boolean).map(Number);
  }

  stats(): CgroupStats {
    const d = this.dir;
    const s = emptyStats();
    const cpu = readKeyed(`${d}/cpu.stat`);
    s.cpu.totalNs = (cpu.usage_usec ?? 0) * 1000;
    s.cpu.userNs = (cpu.user_usec ?? 0) * 1000;
    s.cpu.kernelNs = (cpu.system_usec ?? 0) * 1000;
    s.cpu.periods = cpu.nr_periods ?? 0;
    s.cpu.throttledPeriods = cpu.nr_throttled ?? 0;
    s.cpu.throttledNs = (cpu.throttled_usec ?? 0) * 1000;
    if (read(`${d}/memory.current`) !== undefined) {
      const events = readKeyed(`${d}/memory.events`);
      s.memory.usage = {
        usage: readNumber(`${d}/memory.current`),
        maxUsage: readNumber(`${d}/memory.peak`),
        failcnt: events.max ?? 0,
        limit: readNumber(`${d}/memory.max`),
      };
      s.memory.swap =
        read(`${d}/memory.swap.current`) === undefined
          ? emptyMemory()
          : { usage: readNumber(`${d}/memory.swap.current`), maxUsage: readNumber(`${d}/memory.swap.peak`), failcnt: 0, limit: readNumber(`${d}/memory.swap.max`) };
      s.memory.stats = readKeyed(`${d}/memory.stat`);
      s.memory.cache = s.memory.stats.file ?? 0;
      s.memory.useHierarchy = true;
      if (events.oom_kill !== undefined) s.memory.oomKills = events.oom_kill;
    }
    if (read(`${d}/pids.current`) !== undefined) s.pids = { current: readNumber(`${d}/pids.current`), limit: readNumber(`${d}/pids.max`) };
    s.blkio = ioStat(`${d}/io.stat`);
    return s;
  }

  private need(file: string): string {
    const path = `${this.dir}/${file}`;
    if (read(path) === undefined) throw new Error(`this guest's cgroup has no ${file} (controller not available)`);
    return path;
  }

  update(r: Resources): void {
    const m = r.memory;
    if (m) {
      if (m.limit) write(this.need('memory.max'), m.limit < 0 ? 'max' : String(m.limit));
      if (m.reservation) write(this.need('memory.low'), String(m.reservation));
      if (m.swap) {
        // OCI counts memory plus swap; v2 limits swap alone.
        const limit = m.limit ?? readNumber(`${this.dir}/memory.max`, -1);
        const swap = m.swap < 0 || limit < 0 ? 'max' : String(Math.max(0, m.swap - limit));
        write(this.need('memory.swap.max'), swap);
      }
    }
    const c = r.cpu;
    if (c) {
      if (c.shares) write(this.need('cpu.weight'), String(sharesToWeight(c.shares)));
      if (c.quota || c.period) {
        const [oldQuota = 'max', oldPeriod = '100000'] = words(read(this.need('cpu.max')));
        const quota = c.quota ? (c.quota < 0 ? 'max' : String(c.quota)) : oldQuota;
        write(this.need('cpu.max'), `${quota} ${c.period || oldPeriod}`);
      }
      if (c.cpus) write(this.need('cpuset.cpus'), c.cpus);
      if (c.mems) write(this.need('cpuset.mems'), c.mems);
    }
    if (r.pids?.limit) write(this.need('pids.max'), r.pids.limit < 0 ? 'max' : String(r.pids.limit));
    if (r.blockIO?.weight) write(this.need('io.weight'), `default ${blkioToIoWeight(r.blockIO.weight)}`);
  }

  async freeze(): Promise<void> {
    await this.setFrozen(true);
  }

  async thaw(): Promise<void> {
    await this.setFrozen(false);
  }

  private async setFrozen(frozen: boolean): Promise<void> {
    write(`${this.dir}/cgroup.freeze`, frozen ? '1' : '0');
    const want = frozen ? 1 : 0;
    const ok = await until(() => readKeyed(`${this.dir}/cgroup.events`).frozen === want, 5_000);
    if (!ok) throw new Error(`the cgroup did not ${frozen ? 'freeze' : 'thaw'}`);
  }

  async destroy(): Promise<void> {
    await removeDir(this.dir);
  }
}

export class CgroupV2Driver implements CgroupDriver {
  readonly version = 'v2' as const;
  private readonly enabled = new Set<string>();

  /**
   * @param parent the guest's own cgroup directory
   * @param ownsParent the guest may move the processes of `parent` into a leaf (PID 1 of
   *   its sandbox); otherwise controllers stay off where the kernel refuses them
   */
  constructor(
    private readonly parent: string,
    private readonly ownsParent: boolean,
    private readonly log?: GuestLog,
  ) {}

  create(group: string, name: string): ContainerCgroup {
    const g = `${this.parent}/${group}`;
    this.enableControllers(this.parent, true);
    makeDir(g);
    this.enableControllers(g, false);
    const dir = `${g}/${name}`;
    makeDir(dir);
    return new V2Cgroup(dir);
  }

  async removeGroup(group: string): Promise<void> {
    await removeDir(`${this.parent}/${group}`);
  }

  private enableControllers(dir: string, isParent: boolean): void {
    if (this.enabled.has(dir)) return;
    const available = words(read(`${dir}/cgroup.controllers`)).filter((c) => WANTED.includes(c));
    const on = new Set(words(read(`${dir}/cgroup.subtree_control`)));
    const missing = available.filter((c) => !on.has(c));
    if (missing.length > 0) {
      const request = missing.map((c) => `+${c}`).join(' ');
      try {
        write(`${dir}/cgroup.subtree_control`, request);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || !isParent || !this.ownsParent) {
          this.log?.warn('cgroup controllers stay off for containers', { dir, controllers: missing, err });
          this.enabled.add(dir);
          return;
        }
        this.moveProcessesToLeaf(dir);
        write(`${dir}/cgroup.subtree_control`, request);
      }
    }
    this.enabled.add(dir);
  }

  /** Moves every process of `dir` into `dir/agent`, so that `dir` may hand out controllers. */
  private moveProcessesToLeaf(dir: string): void {
    const leaf = `${dir}/${AGENT_LEAF}`;
    makeDir(leaf);
    for (const pid of words(read(`${dir}/cgroup.procs`))) {
      try {
        write(`${leaf}/cgroup.procs`, pid);
      } catch {
        // exited meanwhile
      }
    }
  }
}
