// OCI bundles (runtime-spec): DIR/config.json read into the bus's container spec, so a
// bundle made for runc, crun or ctr runs here. Read on the CLI's machine; root.path is
// relative to the bundle unless absolute. What the spec has and the bus does not carry
// (capabilities, seccomp, namespaces, hooks) is the runtime's own default confinement.
import { readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type * as Bus from '../bus/messages.gen.js';

/** The parts of config.json read here. */
interface OciConfig {
  process?: { args?: string[]; env?: string[]; cwd?: string; terminal?: boolean; consoleSize?: { height?: number; width?: number }; user?: { uid?: number; gid?: number } };
  root?: { path?: string; readonly?: boolean };
  hostname?: string;
  mounts?: { destination?: string; type?: string; source?: string; options?: string[] }[];
  linux?: { resources?: { memory?: { limit?: number }; pids?: { limit?: number }; cpu?: { quota?: number; period?: number; shares?: number } } };
}

export class BundleError extends Error {}

export function readBundle(dir: string): Bus.ContainerSpec {
  const file = join(resolve(dir), 'config.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new BundleError(code === 'ENOENT' ? `${file} does not exist: an OCI bundle has its config.json at its top` : `cannot read ${file}: ${(err as Error).message}`);
  }
  let config: OciConfig;
  try {
    config = JSON.parse(text) as OciConfig;
  } catch (err) {
    throw new BundleError(`${file} is not JSON: ${(err as Error).message}`);
  }
  if (typeof config !== 'object' || config === null) throw new BundleError(`${file} is not an OCI runtime config (not an object)`);

  const spec: Bus.ContainerSpec = {};
  const p = config.process ?? {};
  if (p.args !== undefined && !(Array.isArray(p.args) && p.args.every((a) => typeof a === 'string'))) throw new BundleError(`${file}: process.args must be a list of strings`);
  if (p.args?.length) spec.args = p.args;
  if (p.env?.length) spec.env = p.env;
  if (p.cwd) spec.cwd = p.cwd;
  if (p.terminal) spec.terminal = true;
  // The runtime checks the range; a size without a terminal means nothing.
  if (p.terminal && p.consoleSize?.height && p.consoleSize.width) spec.consoleSize = { rows: p.consoleSize.height, cols: p.consoleSize.width };
  if (p.user && (p.user.uid !== undefined || p.user.gid !== undefined)) spec.user = `${p.user.uid ?? 0}:${p.user.gid ?? 0}`;
  if (config.root?.path) spec.rootfs = isAbsolute(config.root.path) ? config.root.path : resolve(dir, config.root.path);
  if (config.hostname) spec.hostname = config.hostname;
  if (config.mounts?.length) {
    spec.mounts = config.mounts.map((m) => {
      const mount: Bus.Mount = { destination: m.destination ?? '' };
      if (m.type) mount.type = m.type;
      if (m.source) mount.source = m.source;
      if (m.options?.length) mount.options = m.options;
      return mount;
    });
  }
  const r = config.linux?.resources;
  const resources: Bus.ContainerResources = {};
  // Negative values mean "unlimited" in the spec: not set here.
  const positive = (v: number | undefined) => (typeof v === 'number' && v > 0 ? v : undefined);
  const memory = positive(r?.memory?.limit);
  const pids = positive(r?.pids?.limit);
  const quota = positive(r?.cpu?.quota);
  const period = positive(r?.cpu?.period);
  const shares = positive(r?.cpu?.shares);
  if (memory) resources.memoryLimitBytes = memory;
  if (pids) resources.pidsLimit = pids;
  if (quota) resources.cpuQuotaUs = quota;
  if (period) resources.cpuPeriodUs = period;
  if (shares) resources.cpuShares = shares;
  if (Object.keys(resources).length) spec.resources = resources;
  return spec;
}
