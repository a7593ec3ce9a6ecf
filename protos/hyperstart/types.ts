// JSON payloads of the ctl channel (reference §5.5), upstream hyperstart's key names.
// Fields hyperstart does not parse are listed where the 2018 runtime sent them; a guest
// ignores what it does not know.

export interface EnvVar {
  env: string;
  value: string;
}

export interface Rlimit {
  type: string;
  hard: number;
  soft: number;
}

export interface Process {
  /** Process id within its container; the init process uses the container id. */
  id?: string;
  user?: string;
  group?: string;
  additionalGroups?: string[];
  terminal?: boolean;
  /** Stream seq carrying stdin (host→guest) and stdout (guest→host). */
  stdio?: number;
  /** Stream seq of stderr; 0 means shared with stdio. */
  stderr?: number;
  args: string[];
  envs?: EnvVar[];
  workdir?: string;
  rlimits?: Rlimit[];
  /**
   * virtactors extension: the terminal's size before the process runs. Sent only to a
   * guest that serves the extension codes; a stock hyperstart has no such field (its
   * driver sends WINSIZE right after the start instead).
   */
  consoleSize?: { rows: number; columns: number };
}

export interface VolumeDescriptor {
  device: string;
  addr?: string;
  mount: string;
  fstype?: string;
  readOnly?: boolean;
  dockerVolume?: boolean;
}

export interface FsmapDescriptor {
  source: string;
  path: string;
  readOnly?: boolean;
  dockerVolume?: boolean;
  absolutePath?: boolean;
  scsiAddr?: string;
}

export interface Container {
  id: string;
  /** Directory of the container's root filesystem; "" for the guest's minimal default one. */
  rootfs: string;
  fstype?: string;
  image?: string;
  addr?: string;
  volumes?: VolumeDescriptor[];
  fsmap?: FsmapDescriptor[];
  sysctl?: Record<string, string>;
  process: Process;
  restartPolicy?: string;
  initialize?: boolean;
  readOnly?: boolean;
  /** virtactors extension: the host allowed this container to be privileged (stock hyperstart ignores it). */
  privileged?: boolean;
}

export interface IpAddress {
  ipAddress: string;
  /** Prefix length, as a string. */
  netMask: string;
}

export interface NetworkInf {
  device: string;
  newDeviceName?: string;
  ipAddresses?: IpAddress[];
  mtu?: number;
  macAddr?: string;
}

export interface Route {
  dest: string;
  gateway?: string;
  device?: string;
}

export interface Pod {
  hostname: string;
  containers?: Container[];
  interfaces?: NetworkInf[];
  dns?: string[];
  routes?: Route[];
  /** The guest's shared directory (9p mount tag in a VM; a path here). */
  shareDir?: string;
}

export interface ExecCommand {
  container?: string;
  process: Process;
}

export interface KillCommand {
  container: string;
  signal: number;
  /** The 2018 runtime's addition; upstream signals the init pid only. */
  allProcesses?: boolean;
}

export interface SignalCommand {
  container: string;
  process: string;
  signal: number;
}

export interface RemoveCommand {
  container: string;
}

/** PSCONTAINER (the cc dialect's payload, at our extension code). */
export interface PsCommand {
  container: string;
  format: 'json' | 'table';
  /** ps(1) arguments; the guest uses ["-ef"] when empty. */
  psargs: string[];
}

export interface FileCommand {
  container: string;
  file: string;
}

export interface WindowSizeMessage {
  container: string;
  process: string;
  row: number;
  column: number;
}

export interface Routes {
  routes: Route[];
}

export interface ProcessAsyncEvent {
  container: string;
  process: string;
  event: 'finished';
  status: number;
  info?: string;
}

/** Our guest's ACK payload for NEWCONTAINER and EXECCMD (upstream ACKs are empty). */
export interface StartedReply {
  pid: number;
}
