// The agent contract: what every agent type (noop, hyperstart, kata) implements.
// The first 14 operations are the seed interface of the reference (§2.2), in its order;
// the rest follow its later additions (§2.3). A driver does the I/O; AgentActor puts
// the connection statechart in front of it.
import type { Logger } from 'pino';
import type { AgentType, ContainerSpec, ProcessSpec, SandboxSpec } from '../../machines/specs.js';
import type { GuestShare } from '../shared-dir.js';
import { UNKNOWN_EXIT_STATUS } from '../../machines/lifecycle.js';

export { UNKNOWN_EXIT_STATUS };

/** Capability bits (reference §2.5). */
export const Capability = {
  blockDeviceSupport: 1,
  blockDeviceHotplugSupport: 2,
  multiQueueSupport: 4,
  fsSharingSupported: 8,
} as const;

export type { ProcessSpec };

/** A started process. A stock agent may not say its pid: then pid is 0 and pidUnknown set. */
export interface StartResult {
  pid: number;
  pidUnknown?: boolean;
}

export interface ExecResult extends StartResult {
  execId: string;
}

export interface ExitInfo {
  /** 128 + n for a death by signal n; 255 when unknown. */
  exitStatus: number;
  exitedAt: string;
  /** What the runtime knows beyond the status ("OOMKilled"), and in words. */
  reason?: string;
  message?: string;
  /**
   * The process ended but its status is unknown (the guest died, or a stock agent
   * reported a death by a signal as 0): exitStatus says 255, never an invented value.
   */
  exitStatusUnknown?: boolean;
}

/** The exit of a process whose status nobody can tell. */
export const unknownExit = (exitedAt = new Date().toISOString()): ExitInfo => ({ exitStatus: UNKNOWN_EXIT_STATUS, exitedAt, exitStatusUnknown: true });

export type ProcessListFormat = 'json' | 'table';

export interface ProcessListOptions {
  format: ProcessListFormat;
  /** ps(1) arguments; the agent uses ["-ef"] when empty. */
  args: string[];
}

/** Where a booted guest can be reached; filled in by the sandbox backend. */
export interface GuestEndpoint {
  /** kata: the gRPC address. */
  grpcAddress?: string;
  /** hyperstart: the two unix sockets. */
  ctlSocket?: string;
  ttySocket?: string;
  /** The shared directory container rootfs are staged in, when the backend exports one (a VM, over 9p). */
  share?: GuestShare;
}

/**
 * How to start a guest: what the backend runs as the guest's first process, and where
 * its agent will listen. An agent without a guest (noop) returns no plan.
 */
export interface GuestPlan {
  endpoint: GuestEndpoint;
  /** argv of the guest agent process (argv[0] is the executable). */
  command: string[];
  /** The guest's whole environment (nothing of the host's is passed on). */
  env: Record<string, string>;
  /** The 9p mount tag the agent asks a VM to export its shared directory under. */
  shareTag?: string;
}

/** What a restarted runtime knows of a guest it reattaches to (from the sandbox's record). */
export interface AdoptedGuest {
  endpoint: GuestEndpoint;
  /** Every container the sandbox has, with the processes (init: the container id) it believes still run. */
  containers: { spec: ContainerSpec; started: boolean; running: string[] }[];
}

/** What the agent reports back on its own (exits seen in the guest, a lost connection). */
export interface AgentListener {
  processExited(containerId: string, execId: string, exit: ExitInfo): void;
  output?(containerId: string, execId: string, stream: 'stdout' | 'stderr', data: Uint8Array): void;
  connectionLost?(message: string): void;
}

export interface AgentInit {
  sandbox: SandboxSpec;
  /** The agent config, already decoded for this agent type. */
  config: unknown;
  /** Directory for this sandbox's sockets and state on the host. */
  runDir: string;
  listener: AgentListener;
  /** The host's logger, already bound to the sandbox id. */
  log?: Logger;
}

/**
 * Every operation that may talk to the guest takes an AbortSignal (`abort`) as its last argument:
 * it aborts when the caller's deadline passes or the caller goes away, and the driver
 * then gives up the call (and frees what it holds for it). Hosts always pass one
 * (AgentActor.call); tools and tests may leave it out. Default time limits per
 * operation are in calls.ts.
 */
export interface Agent {
  readonly type: AgentType;
  /** A running process's stdin: bytes written in order, and its end (agents with a stdio stream). */
  writeProcessStdin?(containerId: string, execId: string, data: Uint8Array, abort?: AbortSignal): Promise<unknown>;
  closeProcessStdin?(containerId: string, execId: string, abort?: AbortSignal): Promise<void>;
  /** 1. Validates the config and prepares host-side state. Idempotent. */
  init(init: AgentInit, abort?: AbortSignal): Promise<void>;
  /** 2. Capability bitmask. */
  capabilities(): number;
  /** 3. Liveness probe: resolves when the guest agent answers (the caller bounds it). */
  check(abort?: AbortSignal): Promise<void>;
  /** 4. Closes any connection to the guest. Safe when not connected. */
  disconnect(abort?: AbortSignal): Promise<void>;
  /** 5. Host-side preparation before the guest boots; no guest communication. */
  createSandbox(abort?: AbortSignal): Promise<GuestPlan | void>;
  /** 6. Runs an extra process in a running container. */
  exec(containerId: string, process: ProcessSpec, execId: string, abort?: AbortSignal): Promise<ExecResult>;
  /**
   * 6b. Where the booted guest listens, as its backend answered (a VM's serial sockets, an
   * attached endpoint): set before the first connect, so the driver never dials the
   * planned address of a guest that is elsewhere. No guest communication.
   */
  locate?(endpoint: GuestEndpoint): void;
  /** 7. Right after the guest booted (and was located): sets the sandbox up in the guest. */
  startSandbox(endpoint: GuestEndpoint, abort?: AbortSignal): Promise<void>;
  /** 8. Tears the sandbox down in the guest. */
  stopSandbox(abort?: AbortSignal): Promise<void>;
  /** 9. Prepares a container in the guest. */
  createContainer(container: ContainerSpec, abort?: AbortSignal): Promise<void>;
  /** 10. Starts the container's init process. */
  startContainer(containerId: string, abort?: AbortSignal): Promise<StartResult>;
  /** 11. Ends the container's processes and removes it from the guest; the init exit when known. */
  stopContainer(containerId: string, abort?: AbortSignal): Promise<ExitInfo | undefined>;
  /** 12. Delivers a signal to the init process, or to every process when `all`. */
  killContainer(containerId: string, signal: number, all: boolean, abort?: AbortSignal): Promise<void>;
  /** 13. Runs ps in the guest, filtered to the container. */
  processListContainer(containerId: string, options: ProcessListOptions, abort?: AbortSignal): Promise<Uint8Array>;
  /** 14. Onlines hot-plugged vCPUs and memory. */
  onlineCPUMem(cpus: number, abort?: AbortSignal): Promise<void>;

  // Later additions (reference §2.3).
  waitProcess(containerId: string, execId: string, abort?: AbortSignal): Promise<ExitInfo>;
  signalProcess(containerId: string, execId: string, signal: number, all: boolean, abort?: AbortSignal): Promise<void>;
  pauseContainer(containerId: string, abort?: AbortSignal): Promise<void>;
  resumeContainer(containerId: string, abort?: AbortSignal): Promise<void>;
  /** The container is deleted: the guest forgets it and what the host staged for it goes. */
  releaseContainer?(containerId: string, abort?: AbortSignal): Promise<void>;
  /**
   * Reattach, after init and locate: takes over what an earlier driver knew of the guest
   * (its containers, the processes believed running). No guest communication.
   */
  adopt?(guest: AdoptedGuest): void;
  /**
   * Reattach, once the sandbox's actor runs: catches up with the guest. Every adopted
   * process that ended meanwhile is reported through the listener exactly once, with its
   * real status where the guest kept it, else 255 (exitStatusUnknown); the others are
   * watched again.
   */
  reconcile?(abort?: AbortSignal): Promise<void>;
  /**
   * Sets the size of a process's terminal (execId: the container id for its init). The
   * caller has checked that the process has one; agents without it are refused with
   * Unimplemented.
   */
  winsizeProcess?(containerId: string, execId: string, rows: number, cols: number, abort?: AbortSignal): Promise<void>;
  /** Resource usage of the container; agents without it are refused with Unimplemented. */
  statsContainer?(containerId: string, abort?: AbortSignal): Promise<ContainerStats>;
}

/** Resource usage, as far as the guest can tell (0 when unknown). */
export interface ContainerStats {
  cpuUsageNs: number;
  memoryUsageBytes: number;
  memoryLimitBytes: number;
  pidsCurrent: number;
  pidsLimit: number;
  /** The OOM kills counted in the container's cgroup in the guest; undefined when the guest does not say (a stock agent). */
  oomKills?: number;
}

export const defaultPsArgs = ['-ef'];
