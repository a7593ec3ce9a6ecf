// `npm start`: runs one runtime host. With NATS_URL set it joins that server or
// cluster (with the host credentials in NATS_CREDS); without, it starts a private
// nats-server (JetStream on, authentication on, data and credentials under the state
// directory) and prints the URL for clients.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from './log.js';
import { RuntimeHost } from './host.js';
import { privateServer, type PrivateServer } from './private-server.js';
import { parseMetricsAddr } from './metrics.js';
import { replicasFromEnv, stateDir, stateFiles } from '../bus/connection.js';
import { authFiles, ensureAuthority, loadAuthority, privateDir } from '../bus/auth-files.js';
import { serverAuthConfig, type Authority } from '../bus/credentials.js';
import { statelyInspector } from './stately-inspector.js';
import '../actors/install-drivers.js';
import type { MonitorSettings } from '../machines/specs.js';
import { parsePoolTargets } from '../actors/backends/vm/pool.js';

/** Host-wide monitor defaults; each sandbox may override them in its spec. */
function monitorDefaults(): Partial<MonitorSettings> {
  const out: Partial<MonitorSettings> = {};
  const num = (name: string) => {
    const v = process.env[name];
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v) || Number(v) < 10) throw new Error(`${name} must be a number of milliseconds, at least 10`);
    return Number(v);
  };
  const interval = num('VC_MONITOR_INTERVAL_MS');
  const deadline = num('VC_MONITOR_DEADLINE_MS');
  if (interval) out.intervalMs = interval;
  if (deadline) out.deadlineMs = deadline;
  const policy = process.env.VC_MONITOR_POLICY;
  if (policy) {
    if (policy !== 'keep' && policy !== 'stop-and-delete') throw new Error('VC_MONITOR_POLICY must be keep or stop-and-delete');
    out.policy = policy;
  }
  return out;
}

function positive(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined) return undefined;
  if (!/^[1-9]\d*$/.test(v)) throw new Error(`${name} must be a positive number`);
  return Number(v);
}

/** VC_ATTACH_DIRS: absolute directories, colon-separated, where external agent endpoints may lie. */
/** A whole number of the environment, 0 included (0 MiB: no reserve). */
function whole(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new Error(`${name} must be a whole number`);
  return Number(v);
}

function attachDirs(): string[] {
  const dirs = (process.env.VC_ATTACH_DIRS ?? '').split(':').filter(Boolean);
  for (const d of dirs) if (!d.startsWith('/')) throw new Error(`VC_ATTACH_DIRS: ${d} is not an absolute path`);
  return dirs;
}

/** The deadline of commands that name none (VC_COMMAND_TIMEOUT_MS), in ms. */
function commandDeadline(): number | undefined {
  const v = process.env.VC_COMMAND_TIMEOUT_MS;
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 100) throw new Error('VC_COMMAND_TIMEOUT_MS must be a number of milliseconds, at least 100');
  return Number(v);
}

/** VC_HOST_LOST_AFTER_MS: after how long without a heartbeat another host counts as lost. */
function hostLostAfter(): number | undefined {
  const v = process.env.VC_HOST_LOST_AFTER_MS;
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 500) throw new Error('VC_HOST_LOST_AFTER_MS must be a number of milliseconds, at least 500');
  return Number(v);
}

async function main(): Promise<void> {
  const log = createLogger('virtactors');
  const dir = stateDir();
  mkdirSync(dir, { recursive: true });
  const files = stateFiles(dir);
  let server: PrivateServer | undefined;
  let servers = process.env.NATS_URL;
  let creds = process.env.NATS_CREDS || undefined;
  // The keys that sign new users, when this host has them (served as `creds create`).
  let authority: Authority | undefined;
  if (!servers) {
    privateDir(files.auth);
    authority = (await ensureAuthority(files.auth)).authority;
    creds = authFiles(files.auth).creds('host');
    const port = Number(process.env.VC_NATS_PORT ?? 4222);
    server = await privateServer(dir, { port, auth: serverAuthConfig(authority), log });
    servers = server.url;
    process.stdout.write(
      `virtactors: ${server.reused ? 'reusing the ' : ''}private nats-server at ${servers} (credentials required)\n` +
        `  export NATS_URL=${servers} NATS_CREDS=${authFiles(files.auth).creds('operator')}\n`,
    );
  } else if (process.env.VC_AUTH_DIR && existsSync(process.env.VC_AUTH_DIR)) {
    authority = loadAuthority(process.env.VC_AUTH_DIR);
  }
  const stately = await statelyInspector(process.env.VC_STATELY_INSPECT, log, Number(process.env.VC_STATELY_INSPECT_PORT ?? 8080));
  const host = await RuntimeHost.start({
    servers: servers.split(','),
    creds,
    authority,
    host: process.env.VC_HOST,
    runRoot: process.env.VC_RUN_DIR ?? join(dir, 'run'),
    log,
    monitor: monitorDefaults(),
    inspect: process.env.VC_INSPECT === '1',
    observe: stately?.observe,
    commandDeadlineMs: commandDeadline(),
    vm: { pool: parsePoolTargets(process.env.VC_VM_POOL), memoryMiB: positive('VC_VM_MEMORY_MIB'), cpus: positive('VC_VM_CPUS') },
    attachDirs: attachDirs(),
    allowPrivileged: process.env.VC_ALLOW_PRIVILEGED === '1',
    protectedDirs: [dir],
    outboxDir: join(dir, 'outbox'),
    hostLostAfterMs: hostLostAfter(),
    replicas: replicasFromEnv(),
    metricsAddr: parseMetricsAddr(process.env.VC_METRICS_ADDR),
    memoryReserveMiB: whole('VC_MEMORY_RESERVE_MIB'),
    maxSandboxes: positive('VC_MAX_SANDBOXES'),
    eventMaxBytes: positive('VC_EVENTS_MAX_BYTES'),
    sandboxPidsMax: whole('VC_SANDBOX_PIDS_MAX'),
  });
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    await host.stop().catch((err) => log.error({ err }, 'host stop failed'));
    stately?.stop();
    // The private server goes with the host; the guests stay, for the next start to reattach.
    await server?.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  // Only now: whoever reads this line may send a Ctrl-C at once (stdout to a pipe is synchronous).
  process.stdout.write(`virtactors: host ${host.host} serving on ${servers}${host.metricsUrl ? `, metrics at ${host.metricsUrl}` : ''}\n`);
}

main().catch((err) => {
  let message = err instanceof Error ? err.message : String(err);
  if (/Authorization Violation/.test(message)) {
    message += process.env.NATS_CREDS
      ? `: the server does not accept ${process.env.NATS_CREDS}`
      : ': the server requires credentials; set NATS_CREDS to a host .creds file (virtactors creds create --role host NAME)';
  }
  process.stderr.write(`virtactors: ${message}\n`);
  process.exit(1);
});
