// Between the kata protocol's messages and the supervisor's types: OCI process and
// resources in, cgroup counters out.
import type { CgroupStats, ProcessSpec, Resources, UserRef } from '../common/index.js';
import { GuestError, parseUser, PRIVILEGED_ANNOTATION, relaxationsIn } from '../common/index.js';
import type { CgroupStats as ProtoCgroupStats, LinuxResources, Process, Spec, StringUser } from '../../protos/kata/index.js';

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

/** OCI resources; zero values mean "not set", as in the 2018 agent. */
export function resourcesOf(r: LinuxResources | undefined): Resources | undefined {
  if (!r) return undefined;
  const out: Resources = {};
  const m = r.Memory;
  if (m && (m.Limit || m.Reservation || m.Swap || m.Swappiness)) {
    out.memory = {};
    if (m.Limit) out.memory.limit = m.Limit;
    if (m.Reservation) out.memory.reservation = m.Reservation;
    if (m.Swap) out.memory.swap = m.Swap;
    if (m.Swappiness) out.memory.swappiness = m.Swappiness;
  }
  const c = r.CPU;
  if (c && (c.Shares || c.Quota || c.Period || c.Cpus || c.Mems)) {
    out.cpu = {};
    if (c.Shares) out.cpu.shares = c.Shares;
    if (c.Quota) out.cpu.quota = c.Quota;
    if (c.Period) out.cpu.period = c.Period;
    if (c.Cpus) out.cpu.cpus = c.Cpus;
    if (c.Mems) out.cpu.mems = c.Mems;
  }
  if (r.Pids?.Limit) out.pids = { limit: r.Pids.Limit };
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
      stats: s.memory.stats,
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
