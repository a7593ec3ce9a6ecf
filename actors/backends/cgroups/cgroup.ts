// The per-sandbox cgroup: one small interface over cgroup v1 (a directory in every
// writable controller hierarchy) and v2 (one directory in the unified tree). The guest's
// first process joins it before it starts anything, so all it runs is accounted and can
// be frozen, limited and killed as a whole.
import { invalidArgument } from '../../../bus/errors.js';

export interface CgroupLimits {
  /** Memory limit in bytes. */
  memoryBytes?: number;
  /** Maximum number of processes (tasks on v1). */
  pidsMax?: number;
  /** CPU bandwidth in cores (0.5 = half a core). */
  cpus?: number;
  /**
   * The host's pids limit for a sandbox that asks for none: applied where the pids
   * controller is, and skipped (not refused) where it is not.
   */
  defaultPidsMax?: number;
}

/**
 * Processes (threads included) a sandbox may have unless it asks otherwise
 * (VC_SANDBOX_PIDS_MAX): without a bound, a fork bomb in one container takes the host's
 * whole pid space. A guest agent on Node is ~11 threads of it.
 */
export const DEFAULT_SANDBOX_PIDS_MAX = 4096;

export interface SandboxCgroup {
  /** One directory per hierarchy (a single one on v2). */
  readonly dirs: readonly string[];
  /** The directory with the memory controller's files, when there is one (its OOM counters). */
  readonly memoryDir: string | undefined;
  readonly version: 1 | 2;
  /** cgroup.procs files: a process that writes "0" into each of them joins the cgroup. */
  readonly procsFiles: readonly string[];
  /** Host pids of every process in the subtree, child cgroups included. */
  pids(): Promise<number[]>;
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  /**
   * Hands the cgroup to a guest running as `uid`/`gid` (its user namespace's root): it may
   * make child cgroups and move its processes, never change the limits set here.
   */
  delegate(uid: number, gid: number): void;
  /** Kills whatever is left in the subtree and removes it, child cgroups first. */
  destroy(): Promise<void>;
}

/**
 * Whose cgroup it is: the runtime host and the sandbox's incarnation, not the sandbox id
 * alone, so that two runtimes on one machine (or two incarnations of one id) never share,
 * freeze or kill each other's cgroups.
 */
export interface CgroupOwner {
  host: string;
  sandboxId: string;
  /** The sandbox actor's per-incarnation uid (hex). */
  incarnation: string;
}

export interface CgroupDriver {
  readonly version: 1 | 2;
  /** Creates the sandbox's cgroup (reusing one left by an earlier run) with its limits. */
  create(owner: CgroupOwner, limits: CgroupLimits): Promise<SandboxCgroup>;
  /** The sandbox's cgroup as it would be created: for clean-up after a restart. */
  open(owner: CgroupOwner): SandboxCgroup;
}

/** Sandbox annotations that ask for limits. */
export const LimitAnnotation = {
  memory: 'io.virtactors.memory-limit',
  pids: 'io.virtactors.pids-limit',
  cpus: 'io.virtactors.cpu-limit',
} as const;

const units: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

function parseBytes(key: string, value: string): number {
  const m = /^(\d+)\s*([kmgt]?)i?b?$/i.exec(value.trim());
  const bytes = m ? Number(m[1]) * units[m[2]!.toLowerCase()]! : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw invalidArgument(`${key}: ${JSON.stringify(value)} is not a size such as 268435456, 256M or 1Gi`);
  return bytes;
}

function parseCount(key: string, value: string): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw invalidArgument(`${key}: ${JSON.stringify(value)} is not a positive integer`);
  return n;
}

function parseCpus(key: string, value: string): number {
  const n = /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : NaN;
  if (!(n >= 0.01)) throw invalidArgument(`${key}: ${JSON.stringify(value)} is not a number of cores such as 0.5 or 2`);
  return n;
}

/** The limits a sandbox's annotations ask for; malformed values are InvalidArgument. */
export function limitsFromAnnotations(annotations: Record<string, string>): CgroupLimits {
  const limits: CgroupLimits = {};
  const memory = annotations[LimitAnnotation.memory];
  const pids = annotations[LimitAnnotation.pids];
  const cpus = annotations[LimitAnnotation.cpus];
  if (memory !== undefined) limits.memoryBytes = parseBytes(LimitAnnotation.memory, memory);
  if (pids !== undefined) limits.pidsMax = parseCount(LimitAnnotation.pids, pids);
  if (cpus !== undefined) limits.cpus = parseCpus(LimitAnnotation.cpus, cpus);
  return limits;
}

export const hasLimits = (limits: CgroupLimits) =>
  limits.memoryBytes !== undefined || limits.pidsMax !== undefined || limits.cpus !== undefined;

/** CFS period used for CPU limits (the kernel's default). */
export const CPU_PERIOD_US = 100_000;

/** Sandbox cgroups live under this directory name, below the runtime's own cgroup. */
export const CGROUP_GROUP = 'virtactors';

// Host names and sandbox ids are bus ids (no dot), so dots keep the three parts apart.
const ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
const INCARNATION = /^[0-9a-f]{1,32}$/;

/** The directory name of an owner's cgroup: `<host>.<sandbox id>.<incarnation>`. */
export function cgroupName(owner: CgroupOwner): string {
  if (!ID.test(owner.host)) throw invalidArgument(`host ${JSON.stringify(owner.host)} cannot name a cgroup`);
  if (!ID.test(owner.sandboxId)) throw invalidArgument(`sandbox id ${JSON.stringify(owner.sandboxId)} cannot name a cgroup`);
  if (!INCARNATION.test(owner.incarnation)) throw invalidArgument(`incarnation ${JSON.stringify(owner.incarnation)} cannot name a cgroup`);
  return `${owner.host}.${owner.sandboxId}.${owner.incarnation}`;
}
