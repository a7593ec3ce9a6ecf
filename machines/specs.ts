// The specs the statecharts carry in their context, normalised by the actor layer
// (defaults filled in, agent type and config already decoded). Plain data.

/** Longest hostname a sandbox may have (the 2018 runtime's maxHostnameLen). */
export const MAX_HOSTNAME_LEN = 64;

export type AgentType = 'noop' | 'hyperstart' | 'kata';
export type BackendType = 'none' | 'namespace' | 'process' | 'vm' | 'external';
export type MonitorPolicy = 'keep' | 'stop-and-delete';

export interface ContainerSpec {
  id: string;
  args: string[];
  env: string[];
  cwd: string;
  user: string;
  terminal: boolean;
  /** Canonical host path of the root filesystem; "" for the guest's minimal default one. */
  rootfs: string;
  annotations: Record<string, string>;
  /** Relaxed confinement (all capabilities, no seccomp, unmasked /proc and /sys); only when allowed. */
  privileged?: boolean;
  /** The container's own hostname (OCI `hostname`); default the sandbox's. */
  hostname?: string;
  /** Its own cgroup limits (OCI `linux.resources`); absent fields are not set. */
  resources?: ContainerResources;
  /** With terminal: the terminal's size at the start (OCI `process.consoleSize`). */
  consoleSize?: ConsoleSize;
}

/** A terminal's size in character cells (each 1 to 65535). */
export interface ConsoleSize {
  rows: number;
  cols: number;
}

export interface ContainerResources {
  memoryLimitBytes?: number;
  pidsLimit?: number;
  cpuQuotaUs?: number;
  cpuPeriodUs?: number;
  cpuShares?: number;
}

/** A process to run (an exec), as the statecharts carry it. */
export interface ProcessSpec {
  args: string[];
  env: string[];
  cwd: string;
  user: string;
  terminal: boolean;
  /** With terminal: its size at the start. */
  consoleSize?: ConsoleSize;
}

export interface MonitorSettings {
  intervalMs: number;
  deadlineMs: number;
  policy: MonitorPolicy;
}

/** Where an agent the runtime did not start listens (backend external): absolute paths. */
export interface AttachSpec {
  grpcSocket: string;
  ctlSocket: string;
  ttySocket: string;
}

export interface SandboxSpec {
  id: string;
  agent: AgentType;
  agentConfig: Record<string, unknown>;
  backend: BackendType;
  hostname: string;
  monitor: MonitorSettings;
  annotations: Record<string, string>;
  containers: ContainerSpec[];
  /** Backend external only. */
  attach?: AttachSpec;
}
