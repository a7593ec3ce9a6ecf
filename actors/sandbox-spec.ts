// Turns a sandbox or container spec from the bus into the normalised spec the
// statecharts carry: ids checked, agent type parsed, config decoded, defaults filled in.
import { realpathSync, statSync } from 'node:fs';
import { isAbsolute, relative, sep } from 'node:path';
import { invalidArgument, failedPrecondition } from '../bus/errors.js';
import { checkId } from '../bus/subjects.js';
import type * as Bus from '../bus/messages.gen.js';
import { MAX_HOSTNAME_LEN, type AttachSpec, type BackendType, type ConsoleSize, type ContainerSpec, type MonitorSettings, type SandboxSpec } from '../machines/specs.js';
import { decodeAgentConfig, parseAgentType } from './agents/agent-type.js';

export const backendTypes: readonly BackendType[] = ['none', 'namespace', 'process', 'vm', 'external'];
const HOSTNAME = /^[A-Za-z0-9][A-Za-z0-9-]*$/;

export interface SpecDefaults {
  monitor: MonitorSettings;
  /** Backend for agents that need a guest, when the spec names none. */
  guestBackend: BackendType;
  /** What containers may ask for; by default no relaxation and no host directory of the runtime. */
  containers?: ContainerPolicy;
}

/** The roles a caller may have on the bus (the security layer sets them, see DESIGN 4c). */
export type CallerRole = 'operator' | 'viewer' | 'host';

export interface ContainerPolicy {
  /**
   * Host setting (VC_ALLOW_PRIVILEGED=1): privileged containers for every caller. Without it
   * only a caller with the operator role may ask for one; on a bus without roles (no
   * authentication) that is nobody.
   */
  allowPrivileged?: boolean;
  /** The runtime's own directories (run and state): no rootfs may be one of them, inside or around them. */
  protectedDirs?: string[];
  /**
   * The bus enforces roles (the host connects with credentials): only operators (and
   * hosts, forwarding) may send a command that changes state, so whoever sent one is one.
   */
  rolesEnforced?: boolean;
}

/** The role of whoever sent a state-changing command, as far as the runtime can know it. */
export function senderOfChange(policy: ContainerPolicy | undefined): CallerRole | undefined {
  return policy?.rolesEnforced ? 'operator' : undefined;
}

/** Whether a caller may relax a container's confinement. */
export function mayRelax(policy: ContainerPolicy | undefined, role: CallerRole | undefined): boolean {
  return role === 'operator' || policy?.allowPrivileged === true;
}

const within = (dir: string, path: string) => {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
};

/**
 * A container's root filesystem: an absolute path of an existing directory, resolved to its
 * canonical form (symlinks followed once, here, so that the path the guest gets cannot move),
 * never "/" and never one of the runtime's own directories or a directory around them.
 */
export function canonicalRootfs(path: string, at: string, protectedDirs: readonly string[] = []): string {
  if (path === '') return '';
  if (!isAbsolute(path) || path.includes('\0')) throw invalidArgument(`${at}.rootfs ${JSON.stringify(path)} is not an absolute path`);
  let real: string;
  try {
    real = realpathSync(path);
    if (!statSync(real).isDirectory()) throw new Error('not a directory');
  } catch {
    throw invalidArgument(`${at}.rootfs ${JSON.stringify(path)} is not an existing directory`);
  }
  if (real === sep) throw invalidArgument(`${at}.rootfs ${JSON.stringify(path)} is the host's root: give a root filesystem of the container's own`);
  for (const dir of protectedDirs) {
    let own: string;
    try {
      own = realpathSync(dir);
    } catch {
      own = dir;
    }
    if (within(real, own) || within(own, real)) throw invalidArgument(`${at}.rootfs ${JSON.stringify(path)} overlaps the runtime's own directory ${own}`);
  }
  return real;
}

export const DEFAULT_MONITOR: MonitorSettings = { intervalMs: 1000, deadlineMs: 2000, policy: 'keep' };

function parseBackend(value: string | undefined, agent: string, defaults: SpecDefaults): BackendType {
  if (!value) return agent === 'noop' ? 'none' : defaults.guestBackend;
  if (!(backendTypes as readonly string[]).includes(value)) {
    throw invalidArgument(`unknown backend ${JSON.stringify(value)}: accepted values are ${backendTypes.join(', ')}`);
  }
  const backend = value as BackendType;
  if (agent === 'noop' && backend !== 'none') throw invalidArgument(`the noop agent runs no guest: use backend "none", not "${backend}"`);
  if (agent !== 'noop' && backend === 'none') throw invalidArgument(`the ${agent} agent needs a guest: use backend "namespace", "process", "vm" or "external"`);
  return backend;
}

function parseMonitor(m: Bus.MonitorSpec | undefined, defaults: MonitorSettings): MonitorSettings {
  const policy = m?.policy || defaults.policy;
  if (policy !== 'keep' && policy !== 'stop-and-delete') {
    throw invalidArgument(`unknown monitor policy ${JSON.stringify(policy)}: accepted values are keep, stop-and-delete`);
  }
  const intervalMs = m?.intervalMs || defaults.intervalMs;
  const deadlineMs = m?.deadlineMs || defaults.deadlineMs;
  if (intervalMs < 10) throw invalidArgument('monitor.intervalMs must be at least 10');
  if (deadlineMs < 10) throw invalidArgument('monitor.deadlineMs must be at least 10');
  return { intervalMs, deadlineMs, policy };
}

/** Environment entries must be KEY=value (no NUL). */
export function checkEnv(env: string[], at: string): string[] {
  env.forEach((e, i) => {
    if (!/^[^=\0]+=/.test(e)) throw invalidArgument(`${at}[${i}] must look like KEY=value, got ${JSON.stringify(e)}`);
  });
  return env;
}

/** Largest side of a terminal: a kernel winsize holds 16-bit values. */
export const MAX_CONSOLE_SIDE = 65_535;

/** A terminal size from the bus: whole numbers from 1 to 65535 each. */
export function checkConsoleSize(rows: number | undefined, cols: number | undefined, at: string): ConsoleSize {
  for (const [name, v] of [['rows', rows], ['cols', cols]] as const) {
    if (v === undefined || !Number.isInteger(v) || v < 1 || v > MAX_CONSOLE_SIDE) {
      throw invalidArgument(`${at}.${name} must be a whole number from 1 to ${MAX_CONSOLE_SIDE}, got ${v ?? 'nothing'}`);
    }
  }
  return { rows: rows!, cols: cols! };
}

/** The optional initial size of a process's terminal: only with terminal set. */
function consoleSizeOf(size: Bus.ConsoleSize | undefined, terminal: boolean, at: string): ConsoleSize | undefined {
  if (!size) return undefined;
  if (!terminal) throw invalidArgument(`${at}.consoleSize is the size of a terminal: set ${at}.terminal too`);
  return checkConsoleSize(size.rows, size.cols, `${at}.consoleSize`);
}

/**
 * `role` is the caller's role where the bus tells it (the hook for the security layer);
 * undefined until then.
 */
export function normalizeContainerSpec(c: Bus.ContainerSpec | undefined, at = 'container', policy?: ContainerPolicy, role?: CallerRole): ContainerSpec {
  if (!c) throw invalidArgument(`${at} is required`);
  if (c.privileged && !mayRelax(policy, role)) {
    throw failedPrecondition(`${at}.privileged: privileged containers need the operator role on a bus with credentials (or the host setting VC_ALLOW_PRIVILEGED=1)`);
  }
  const spec: ContainerSpec = {
    id: checkId('container', c.id),
    args: c.args ?? [],
    env: checkEnv(c.env ?? [], `${at}.env`),
    cwd: c.cwd ?? '',
    user: c.user ?? '',
    terminal: c.terminal ?? false,
    rootfs: canonicalRootfs(c.rootfs ?? '', at, policy?.protectedDirs),
    annotations: c.annotations ?? {},
  };
  // Every agent runs (or stands for) a process: without a command there is nothing to run.
  if (!spec.args.length) throw invalidArgument(`${at}.args is empty: a container needs a command (an OCI bundle's process.args)`);
  if (spec.args.some((a) => a.includes('\0'))) throw invalidArgument(`${at}.args may not contain NUL`);
  const consoleSize = consoleSizeOf(c.consoleSize, spec.terminal, at);
  if (consoleSize) spec.consoleSize = consoleSize;
  if (c.privileged) spec.privileged = true;
  if (c.hostname) {
    if (c.hostname.length > MAX_HOSTNAME_LEN || !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(c.hostname)) {
      throw invalidArgument(`${at}.hostname ${JSON.stringify(c.hostname)} is not a hostname (letters, digits, dots and dashes, at most ${MAX_HOSTNAME_LEN})`);
    }
    spec.hostname = c.hostname;
  }
  const r = c.resources;
  if (r) {
    const resources = Object.fromEntries(Object.entries(r).filter(([, v]) => typeof v === 'number' && v > 0));
    if (Object.keys(resources).length) spec.resources = resources;
  }
  (c.mounts ?? []).forEach((m, i) => {
    // What every container gets anyway may be named; nothing else comes from the bus.
    if (!STANDARD_MOUNTS.has(m.destination ?? '') || m.type === 'bind') {
      throw invalidArgument(`${at}.mounts[${i}]: ${m.type ?? 'a'} mount of ${JSON.stringify(m.source ?? '')} on ${JSON.stringify(m.destination ?? '')} is refused: only the kernel filesystems every container gets (${[...STANDARD_MOUNTS].join(', ')}) may be named`);
    }
  });
  return spec;
}

/** The mounts every container gets (the guest's standard set): a bundle may list them. */
const STANDARD_MOUNTS = new Set(['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/sys/fs/cgroup']);

export function normalizeSandboxSpec(s: Bus.SandboxSpec | undefined, defaults: SpecDefaults, role?: CallerRole): SandboxSpec {
  if (!s) throw invalidArgument('sandbox is required');
  const id = checkId('sandbox', s.id);
  const agent = s.agent ? parseAgentType(s.agent) : 'noop';
  const hostname = s.hostname || id;
  if (hostname.length > MAX_HOSTNAME_LEN || !HOSTNAME.test(hostname)) {
    throw invalidArgument(`hostname ${JSON.stringify(hostname)} is invalid: up to ${MAX_HOSTNAME_LEN} letters, digits and -`);
  }
  const containers = (s.containers ?? []).map((c, i) => normalizeContainerSpec(c, `sandbox.containers[${i}]`, defaults.containers, role));
  const seen = new Set<string>();
  for (const c of containers) {
    if (seen.has(c.id)) throw invalidArgument(`container id ${c.id} appears twice in sandbox.containers`);
    seen.add(c.id);
  }
  const backend = parseBackend(s.backend, agent, defaults);
  const attach = parseAttach(s.attach, agent, backend);
  return {
    id,
    agent,
    agentConfig: decodeAgentConfig(agent, s.agentConfig) as Record<string, unknown>,
    backend,
    hostname,
    monitor: parseMonitor(s.monitor, defaults.monitor),
    annotations: s.annotations ?? {},
    containers,
    ...(attach ? { attach } : {}),
  };
}

/**
 * The endpoint of an external guest: required with backend external (the agent's sockets),
 * refused with any other (a guest the runtime starts listens where the runtime says). The
 * paths are checked against the host's allowed directories when the sandbox boots.
 */
function parseAttach(a: Bus.AttachSpec | undefined, agent: string, backend: BackendType): AttachSpec | undefined {
  const given = !!(a && (a.grpcSocket || a.ctlSocket || a.ttySocket));
  if (backend !== 'external') {
    if (given) throw invalidArgument(`sandbox.attach names an endpoint to attach to: only backend "external" takes one, not "${backend}"`);
    return undefined;
  }
  const attach: AttachSpec = { grpcSocket: a?.grpcSocket ?? '', ctlSocket: a?.ctlSocket ?? '', ttySocket: a?.ttySocket ?? '' };
  if (agent === 'kata' && (!attach.grpcSocket || attach.ctlSocket || attach.ttySocket)) {
    throw invalidArgument('backend "external" with the kata agent needs sandbox.attach.grpcSocket (and nothing else): the agent\'s unix socket');
  }
  if (agent === 'hyperstart' && (!attach.ctlSocket || !attach.ttySocket || attach.grpcSocket)) {
    throw invalidArgument('backend "external" with the hyperstart agent needs sandbox.attach.ctlSocket and ttySocket: its two unix sockets');
  }
  return attach;
}
