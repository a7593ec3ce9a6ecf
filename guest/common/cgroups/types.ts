// The one small interface in front of cgroup v1 and v2: a cgroup per container for
// membership, limits, counters and freezing.

/** Limits a container may get; an absent (or 0) field leaves the current value. */
export interface Resources {
  memory?: {
    /** Bytes; -1 removes the limit. */
    limit?: number;
    reservation?: number;
    /** Memory plus swap, in bytes; -1 removes the limit. */
    swap?: number;
    swappiness?: number;
  };
  cpu?: {
    shares?: number;
    /** Microseconds per period; -1 removes the cap. */
    quota?: number;
    period?: number;
    cpus?: string;
    mems?: string;
  };
  pids?: {
    /** -1 removes the limit. */
    limit?: number;
  };
  blockIO?: {
    /** 10..1000, as in the OCI spec. */
    weight?: number;
  };
}

export interface MemoryCounters {
  usage: number;
  maxUsage: number;
  failcnt: number;
  /** 0 when unlimited. */
  limit: number;
}

export interface BlkioEntry {
  major: number;
  minor: number;
  op: string;
  value: number;
}

/** Counters in the units of runc's stats: nanoseconds and bytes. */
export interface CgroupStats {
  cpu: {
    totalNs: number;
    perCpuNs: number[];
    kernelNs: number;
    userNs: number;
    periods: number;
    throttledPeriods: number;
    throttledNs: number;
  };
  memory: {
    cache: number;
    usage: MemoryCounters;
    swap: MemoryCounters;
    kernel: MemoryCounters;
    useHierarchy: boolean;
    stats: Record<string, number>;
    /** OOM kills counted in this cgroup (v1 memory.oom_control, v2 memory.events); undefined where the kernel has no counter. */
    oomKills?: number;
  };
  pids: { current: number; limit: number };
  blkio: { serviceBytes: BlkioEntry[]; serviced: BlkioEntry[] };
  hugetlb: Record<string, { usage: number; maxUsage: number; failcnt: number }>;
}

export interface ContainerCgroup {
  /** The cgroup.procs files a new process writes 0 into to join (one per hierarchy). */
  readonly procsFiles: readonly string[];
  /**
   * The OCI linux.cgroupsPath that names this cgroup in every hierarchy, for a runtime that
   * places containers itself (runc) and runs in the guest's own cgroup; undefined when none does.
   */
  readonly ociPath: string | undefined;
  /** Whether this cgroup has a directory in the hierarchy of these controllers ("" for the unified one), as /proc/PID/cgroup names it. */
  covers(controllers: string): boolean;
  /** Every process in the cgroup and below. */
  pids(): number[];
  stats(): CgroupStats;
  update(resources: Resources): void;
  /** False when no freezer is writable (callers fall back to SIGSTOP/SIGCONT). */
  readonly canFreeze: boolean;
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  /** Removes the cgroup; its processes must be gone. */
  destroy(): Promise<void>;
}

export interface CgroupDriver {
  readonly version: 'v1' | 'v2';
  /** Creates `<parent>/<group>/<name>` (the group once, shared by the sandbox's containers). */
  create(group: string, name: string): ContainerCgroup;
  /** Removes the group directory once its containers are gone. */
  removeGroup(group: string): Promise<void>;
}

export const emptyMemory = (): MemoryCounters => ({ usage: 0, maxUsage: 0, failcnt: 0, limit: 0 });

export function emptyStats(): CgroupStats {
  return {
    cpu: { totalNs: 0, perCpuNs: [], kernelNs: 0, userNs: 0, periods: 0, throttledPeriods: 0, throttledNs: 0 },
    memory: { cache: 0, usage: emptyMemory(), swap: emptyMemory(), kernel: emptyMemory(), useHierarchy: false, stats: {} },
    pids: { current: 0, limit: 0 },
    blkio: { serviceBytes: [], serviced: [] },
    hugetlb: {},
  };
}
