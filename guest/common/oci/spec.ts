// The OCI runtime configuration (config.json) of a container bundle: what the container's
// processes are confined to. Built from the guest's own defaults every time; the parts a
// request may choose are its process, root, hostname and nothing else, unless the container
// is explicitly privileged.
import { DEFAULT_CAPABILITIES, defaultSeccomp, guestCapabilities, MASKED_PATHS, READONLY_PATHS, type SeccompProfile } from './defaults.js';

export interface IdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

export interface OciProcess {
  terminal: boolean;
  user: { uid: number; gid: number; additionalGids?: number[] };
  args: string[];
  env: string[];
  cwd: string;
  capabilities: { bounding: string[]; effective: string[]; permitted: string[]; inheritable: string[]; ambient: string[] };
  noNewPrivileges: boolean;
  rlimits?: { type: string; hard: number; soft: number }[];
}

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

export interface OciConfig {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  annotations?: Record<string, string>;
  linux: {
    namespaces: { type: string }[];
    maskedPaths?: string[];
    readonlyPaths?: string[];
    seccomp?: SeccompProfile;
    uidMappings?: IdMapping[];
    gidMappings?: IdMapping[];
    /** For a runtime that places containers itself (runc): the container's cgroup, made by the guest. */
    cgroupsPath?: string;
  };
}

export interface ConfinementOptions {
  /** Relaxed: every capability, no seccomp filter, /proc and /sys unmasked and writable. */
  privileged: boolean;
  /**
   * Stays in the guest's pid namespace (the pod's), as every container of a stock
   * hyperstart pod does; otherwise it gets one of its own.
   */
  podPidNamespace?: boolean;
}

/** Capabilities as the OCI runtime wants them: the same set in every list a root process keeps. */
export function capabilitySet(privileged: boolean): OciProcess['capabilities'] {
  const caps = privileged ? guestCapabilities() : [...DEFAULT_CAPABILITIES];
  return { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] };
}

/** Kernel filesystems every container gets, as containerd sets them up. */
function standardMounts(privileged: boolean): OciMount[] {
  const sysOptions = ['nosuid', 'noexec', 'nodev', privileged ? 'rw' : 'ro'];
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    // A minimal /dev: a small tmpfs the runtime fills with null, zero, full, random, urandom, tty, ptmx.
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: sysOptions },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: [...sysOptions, 'relatime'] },
  ];
}

/** Standard mount destinations: a spec may name these (they are what it gets anyway), nothing else. */
export const STANDARD_MOUNT_DESTINATIONS = new Set(standardMounts(false).map((m) => m.destination));

export interface ConfigInput extends ConfinementOptions {
  process: Omit<OciProcess, 'capabilities' | 'noNewPrivileges'>;
  root: { path: string; readonly: boolean };
  hostname: string;
  /** Extra mounts the guest itself adds (its init, a writable /tmp); never from a request. */
  guestMounts: OciMount[];
  /** When the guest runs in a user namespace: the container stays in it, so no mapping. */
  annotations?: Record<string, string>;
  /** linux.cgroupsPath, for a runtime that places the container itself. */
  cgroupsPath?: string;
}

/** The whole config.json of a container. */
export function ociConfig(input: ConfigInput): OciConfig {
  const { privileged } = input;
  const config: OciConfig = {
    ociVersion: '1.0.2',
    process: { ...input.process, capabilities: capabilitySet(privileged), noNewPrivileges: !privileged },
    root: input.root,
    hostname: input.hostname,
    mounts: [...standardMounts(privileged), ...input.guestMounts],
    linux: {
      // Its own pid, mount, ipc and uts namespaces; the network (and user namespace) are the sandbox's.
      namespaces: [...(input.podPidNamespace ? [] : [{ type: 'pid' }]), { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }],
    },
  };
  if (input.annotations && Object.keys(input.annotations).length > 0) config.annotations = input.annotations;
  if (input.cgroupsPath) config.linux.cgroupsPath = input.cgroupsPath;
  if (!privileged) {
    config.linux.maskedPaths = MASKED_PATHS;
    config.linux.readonlyPaths = READONLY_PATHS;
    config.linux.seccomp = defaultSeccomp();
  }
  return config;
}
