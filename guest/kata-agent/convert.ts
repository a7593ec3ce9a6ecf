// Between the kata protocol's messages and the supervisor's types: OCI process and
// resources in, cgroup counters out.
import type { CgroupStats, ProcessSpec, Resources, UserRef } from '../common/index.js';
import { GuestError, parseUser, PRIVILEGED_ANNOTATION, relaxationsIn } from '../common/index.js';
import { int64Number, OOM_KILL_STAT, type CgroupStats as ProtoCgroupStats, type Int64, type LinuxResources, type Process, type Spec, type StringUser } from '../../protos/kata/index.js';

/** The user of a process: a non-empty StringUser wins over the OCI user. */
export function userOf(process: Process | undefined, stringUser: StringUser | undefined): UserRef {
  if (stringUser?.uid) return parseUser(stringUser.gid ? `${stringUser.uid}:${stringUser.gid}` : stringUser.uid);
  const u = process?.User;
  if (!u) return {};
  const ref: UserRef = { uid: u.UID ?? 0, gid: u.GID ?? 0 };
  if (u.Username) ref.name = u.Username;
  if (u.AdditionalGids?.length) ref.additionalGids = u.AdditionalGids;
  return ref;
}

export function processSpec(process: Process, stringUser: StringUser | undefined): ProcessSpec {
  const spec: ProcessSpec = {
    args: process.Args ?? [],
    env: process.Env ?? [],
    cwd: process.Cwd || '/',
    user: userOf(process, stringUser),
    terminal: !!process.Terminal,
  };
  const box = process.ConsoleSize;
  if (spec.terminal && box?.Height && box.Width) spec.consoleSize = { rows: box.Height, cols: box.Width };
  return spec;
}

/** OCI resources; zero values mean "not set", as in the 2018 agent. 64-bit values arrive as strings. */
export function resourcesOf(r: LinuxResources | undefined): Resources | undefined {
  if (!r) return undefined;
  const num = (v: Int64 | undefined, what: string) => {
    try {
      return int64Number(v, what);
    } catch (err) {
      throw new GuestError('InvalidArgument', (err as Error).message);
    }
  };
  const out: Resources = {};
  const m = r.Memory;
  if (m) {
    const memory = { limit: num(m.Limit, 'Memory.Limit'), reservation: num(m.Reservation, 'Memory.Reservation'), swap: num(m.Swap, 'Memory.Swap'), swappiness: num(m.Swappiness, 'Memory.Swappiness') };
    if (memory.limit || memory.reservation || memory.swap || memory.swappiness) {
      out.memory = {};
      if (memory.limit) out.memory.limit = memory.limit;
      if (memory.reservation) out.memory.reservation = memory.reservation;
      if (memory.swap) out.memory.swap = memory.swap;
      if (memory.swappiness) out.memory.swappiness = memory.swappiness;
    }
  }
  const c = r.CPU;
  if (c) {
    const cpu = { shares: num(c.Shares, 'CPU.Shares'), quota: num(c.Quota, 'CPU.Quota'), period: num(c.Period, 'CPU.Period') };
    if (cpu.shares || cpu.quota || cpu.period || c.Cpus || c.Mems) {
      out.cpu = {};
      if (cpu.shares) out.cpu.shares = cpu.shares;
      if (cpu.quota) out.cpu.quota = cpu.quota;
      if (cpu.period) out.cpu.period = cpu.period;
      if (c.Cpus) out.cpu.cpus = c.Cpus;
      if (c.Mems) out.cpu.mems = c.Mems;
    }
  }
  const pids = num(r.Pids?.Limit, 'Pids.Limit');
  if (pids) out.pids = { limit: pids };
  if (r.BlockIO?.Weight) out.blockIO = { weight: r.BlockIO.Weight };
  return Object.keys(out).length > 0 ? out : undefined;
}

export function statsMessage(s: CgroupStats): ProtoCgroupStats {
  const mem = (m: CgroupStats['memory']['usage']) => ({ usage: m.usage, max_usage: m.maxUsage, failcnt: m.failcnt, limit: m.limit });
  const blk = (entries: CgroupStats['blkio']['serviceBytes']) => entries.map((e) => ({ major: e.major, minor: e.minor, op: e.op, value: e.value }));
  const hugetlb: NonNullable<ProtoCgroupStats['hugetlb_stats']> = {};
  for (const [size, h] of Object.entries(s.hugetlb)) hugetlb[size] = { usage: h.usage, max_usage: h.maxUsage, failcnt: h.failcnt };
  return {
    cpu_stats: {
      cpu_usage: { total_usage: s.cpu.totalNs, percpu_usage: s.cpu.perCpuNs, usage_in_kernelmode: s.cpu.kernelNs, usage_in_usermode: s.cpu.userNs },
      throttling_data: { periods: s.cpu.periods, throttled_periods: s.cpu.throttledPeriods, throttled_time: s.cpu.throttledNs },
    },
    memory_stats: {
      cache: s.memory.cache,
      usage: mem(s.memory.usage),
      swap_usage: mem(s.memory.swap),
      kernel_usage: mem(s.memory.kernel),
      use_hierarchy: s.memory.useHierarchy,
      // Our extension: the host's only way to see an OOM kill in a VM (OOM_KILL_STAT).
      stats: s.memory.oomKills === undefined ? s.memory.stats : { ...s.memory.stats, [OOM_KILL_STAT]: s.memory.oomKills },
    },
    pids_stats: { current: s.pids.current, limit: s.pids.limit },
    blkio_stats: { io_service_bytes_recursive: blk(s.blkio.serviceBytes), io_serviced_recursive: blk(s.blkio.serviced) },
    hugetlb_stats: hugetlb,
  };
}

/**
 * Whether the container is privileged: only when the host marked it so (it checked that the
 * caller may). Any other relaxation the spec asks for is refused rather than dropped.
 */
export function confinementOf(spec: Spec): boolean {
  if (spec.Annotations?.[PRIVILEGED_ANNOTATION] === 'true') return true;
  const asked = relaxationsIn(spec);
  if (asked.length > 0) throw new GuestError('InvalidArgument', `the container asks for what only a privileged container gets: ${asked.join('; ')}`);
  return false;
}
