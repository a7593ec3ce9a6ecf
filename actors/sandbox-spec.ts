// Turns a sandbox or container spec from the bus into the normalised spec the
// statecharts carry: ids checked, agent type parsed, config decoded, defaults filled in.
import { invalidArgument } from '../bus/errors.js';
import { checkId } from '../bus/subjects.js';
import type * as Bus from '../bus/messages.gen.js';
import { MAX_HOSTNAME_LEN, type BackendType, type ContainerSpec, type MonitorSettings, type SandboxSpec } from '../machines/specs.js';
import { decodeAgentConfig, parseAgentType } from './agents/agent-type.js';

export const backendTypes: readonly BackendType[] = ['none', 'namespace', 'process', 'vm', 'external'];
const HOSTNAME = /^[A-Za-z0-9][A-Za-z0-9-]*$/;

export interface SpecDefaults {
  monitor: MonitorSettings;
  /** Backend for agents that need a guest, when the spec names none. */
  guestBackend: BackendType;
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

export function normalizeContainerSpec(c: Bus.ContainerSpec | undefined, at = 'container'): ContainerSpec {
  if (!c) throw invalidArgument(`${at} is required`);
  return {
    id: checkId('container', c.id),
    args: c.args ?? [],
    env: checkEnv(c.env ?? [], `${at}.env`),
    cwd: c.cwd ?? '',
    user: c.user ?? '',
    terminal: c.terminal ?? false,
    rootfs: c.rootfs ?? '',
    annotations: c.annotations ?? {},
  };
}

export function normalizeSandboxSpec(s: Bus.SandboxSpec | undefined, defaults: SpecDefaults): SandboxSpec {
  if (!s) throw invalidArgument('sandbox is required');
  const id = checkId('sandbox', s.id);
  const agent = s.agent ? parseAgentType(s.agent) : 'noop';
  const hostname = s.hostname || id;
  if (hostname.length > MAX_HOSTNAME_LEN || !HOSTNAME.test(hostname)) {
    throw invalidArgument(`hostname ${JSON.stringify(hostname)} is invalid: up to ${MAX_HOSTNAME_LEN} letters, digits and -`);
  }
  const containers = (s.containers ?? []).map((c, i) => normalizeContainerSpec(c, `sandbox.containers[${i}]`));
  const seen = new Set<string>();
  for (const c of containers) {
    if (seen.has(c.id)) throw invalidArgument(`container id ${c.id} appears twice in sandbox.containers`);
    seen.add(c.id);
  }
  return {
    id,
    agent,
    agentConfig: decodeAgentConfig(agent, s.agentConfig) as Record<string, unknown>,
    backend: parseBackend(s.backend, agent, defaults),
    hostname,
    monitor: parseMonitor(s.monitor, defaults.monitor),
    annotations: s.annotations ?? {},
    containers,
  };
}
