// What a sandbox "is" on the host: the place its guest agent runs. A backend boots the
// guest, reports when it exits, and tears it down.
import type { BackendType, SandboxSpec } from '../../machines/specs.js';
import type { GuestEndpoint, GuestPlan } from '../agents/agent.js';

export interface GuestExit {
  /** Exit status, or 128 + signal number when killed by a signal. */
  status: number;
  signal?: string;
  at: string;
}

/** Which run this is: names what a backend creates on the host (its cgroup). */
export interface Incarnation {
  /** The runtime host that boots the guest. */
  host: string;
  /** The sandbox actor's per-incarnation uid (hex). */
  uid: string;
}

export interface BootRequest {
  sandbox: SandboxSpec;
  incarnation: Incarnation;
  runDir: string;
  /** What the agent prepared: the guest command and where it will listen. */
  plan: GuestPlan;
}

/** A guest an earlier runtime started: what a restarted runtime knows of it. */
export interface AdoptRequest {
  sandbox: SandboxSpec;
  incarnation: Incarnation;
  runDir: string;
  endpoint: GuestEndpoint;
  /** Host pid of its first process, as the record (or the pid file) says. */
  pid?: number;
}

/** What status shows of a backend (a VM: how it runs). */
export interface BackendStatus {
  vm?: { accel: string; machine: string; warm: boolean; pid: number };
}

export interface Backend {
  readonly type: BackendType;
  /** Starts the guest; resolves with where its agent listens. */
  boot(request: BootRequest): Promise<GuestEndpoint>;
  /**
   * Takes over a guest an earlier runtime started (a restart on the same state): true
   * when it still runs and is that sandbox's, false when it is gone. After true, its exit
   * is reported through onExit (with status 255: a process that is not our child tells
   * nobody its status) and shutdown stops it and removes what it left.
   */
  adopt(request: AdoptRequest): Promise<boolean>;
  /** Stops the guest and removes everything it left on the host. Idempotent. */
  shutdown(): Promise<void>;
  /** Called once when the guest exits on its own (not after shutdown). */
  onExit(listener: (exit: GuestExit) => void): void;
  /** Host pid of the guest's first process, when there is one. */
  readonly pid: number | undefined;
  /** Shown in the sandbox's status. */
  status?(): BackendStatus | undefined;
  /** Whether the running guest (and its containers) is in a user namespace mapping root to unprivileged host ids. */
  readonly userNamespace: boolean;
  /**
   * After a process (a container's init or an exec) died of SIGKILL: the OOM counter of
   * its container's cgroup (or the sandbox's) that moved since last asked, when this
   * backend can see them (host cgroups). Without it the guest is asked (actors/oom-check.ts).
   */
  oomKilled?(containerId: string): { oomKills: number; limitBytes?: number } | undefined;
  /** Memory the guest uses now, when this backend can tell, and what was measured. */
  guestMemory?(): GuestMemory | undefined;
}

/**
 * What virtactors_guest_memory_bytes reports for a sandbox (README, Metrics):
 * - `cgroup`: the sandbox's cgroup's memory use (v1 memory.usage_in_bytes, v2
 *   memory.current): guest agent and containers, page cache included (namespace);
 * - `process-tree-rss`: the resident sets (VmRSS) of the guest process and its
 *   descendants, summed, shared pages counted in each (process);
 * - `qemu-rss`: the qemu process's resident set (VmRSS) as the host sees it: the guest
 *   RAM the guest has touched, plus qemu's own memory and, under TCG, its translation
 *   cache (vm).
 */
export interface GuestMemory {
  bytes: number;
  measure: 'cgroup' | 'process-tree-rss' | 'qemu-rss';
}

/** No guest at all: for the noop agent. */
export class NoneBackend implements Backend {
  readonly type = 'none' as const;
  readonly pid = undefined;
  readonly userNamespace = false;
  async boot(request: BootRequest): Promise<GuestEndpoint> {
    return request.plan.endpoint;
  }
  async adopt(): Promise<boolean> {
    return true;
  }
  async shutdown(): Promise<void> {}
  onExit(): void {}
}
