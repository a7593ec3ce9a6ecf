#!/usr/bin/env node
// The virtactors CLI: parses flags, sends one bus request per command, prints a table
// (or JSON with --json). It holds no logic of its own beyond that.
import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { AuthorizationError } from '@nats-io/transport-node';
import { CommandError, VcClient } from '../bus/client.js';
import { discoverBus } from '../bus/connection.js';
import { authFiles, ensureAuthority, writeClusterAuth, writePrivateFile } from '../bus/auth-files.js';
import { isRole, ROLES } from '../bus/roles.js';
import { decodeTrusted } from '../bus/codec.js';
import { ErrorCode } from '../bus/errors.js';
import { subjects } from '../bus/subjects.js';
import { hostOf, publishesInspection } from '../bus/service-discovery.js';
import type * as Bus from '../bus/messages.gen.js';
import { chartFormats, exportCharts, machineNames, type ChartFormat, type MachineName } from '../charts/index.js';

const USAGE = `usage: virtactors [--server URL] [--creds FILE] [--json] [--timeout MS] <command>

sandboxes
  sandbox create <id> [--agent noop|hyperstart|kata] [--backend none|namespace|process|vm|external]
                      [--hostname NAME] [--agent-config JSON] [--host HOST] [--start]
                      [--monitor-interval MS] [--monitor-deadline MS] [--policy keep|stop-and-delete]
                      [--annotation KEY=VALUE]... [--attach grpc=PATH | --attach ctl=PATH --attach tty=PATH]
  sandbox start|stop|pause|resume|status <id>
  sandbox delete <id> [--force]
  sandbox forget <id>                               (drops the record of a sandbox whose host is lost; operators only)
  sandbox list [--host HOST]
containers
  container create <sid> <cid> [--env K=V]... [--cwd DIR] [--user UID[:GID]] [--tty] [--rootfs DIR] [--privileged] -- CMD [ARG]...
  container start|stop|pause|resume|status <sid> <cid>
  container kill <sid> <cid> [SIGNAL] [--all]
  container delete <sid> <cid> [--force]
  container exec <sid> <cid> [--exec-id ID] [--env K=V]... [--cwd DIR] [--user U] [--tty] -- CMD [ARG]...
  container ps <sid> <cid> [--format json|table] [-- PS_ARG...]
  container wait <sid> <cid> [--exec-id ID] [--timeout-ms MS]
  container logs <sid> <cid> [--exec-id ID] [--tail BYTES]   (stdout to stdout, stderr to stderr)
  container stats <sid> <cid>
events
  events [--sandbox SID] [--follow] [--since N]     (N: the sandbox's event seq, or the stream seq)
hosts
  hosts                                             (runtime hosts answering service discovery)
statecharts
  statecharts [--format json|mermaid|dot] [--machine NAME]...
                                                    (the machine definitions: toJSON() for Stately's visualiser,
                                                     Mermaid stateDiagram-v2 or Graphviz DOT; NAME: ${machineNames.join('|')})
  inspect <sid>                                     (live snapshots of a sandbox's actors; host needs VC_INSPECT=1)
  ui [--port N]                                     (a live page of hosts, sandboxes and statecharts on 127.0.0.1; N=0: any free port)
credentials
  creds create --role viewer|operator|host NAME [--out FILE]   (operators only; writes NAME.creds, 0600)
  creds init DIR [--routes HOST:PORT,...]           (a new authority for a deployment: keys, server include,
                                                     host and operator credentials; with --routes the cluster include)

The server is --server, else $NATS_URL, else the URL \`npm start\` wrote to .state/nats.url,
else nats://127.0.0.1:4222. The credentials are --creds, else $NATS_CREDS, else the
operator credentials \`npm start\` created in .state/auth/creds/operator.creds.`;

class UsageError extends Error {}

interface Global {
  server: string;
  json: boolean;
  timeout: number;
}

/** Splits argv at the first `--`: flags before, the command line after. */
function splitDashDash(argv: string[]): [string[], string[]] {
  const i = argv.indexOf('--');
  return i < 0 ? [argv, []] : [argv.slice(0, i), argv.slice(i + 1)];
}

type Options = NonNullable<ParseArgsConfig['options']>;

function parse<const O extends Options>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true } as const);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function signalNumber(value: string | undefined): number {
  if (value === undefined) return osConstants.signals.SIGTERM;
  if (/^\d+$/.test(value)) return Number(value);
  const name = (value.toUpperCase().startsWith('SIG') ? value.toUpperCase() : `SIG${value.toUpperCase()}`) as keyof typeof osConstants.signals;
  const n = osConstants.signals[name];
  if (n === undefined) throw new UsageError(`unknown signal ${value}`);
  return n;
}

function keyValues(list: string[] | undefined, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`${what} must be KEY=VALUE, got ${item}`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

// ---- output ---------------------------------------------------------------------

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

function sandboxRows(list: Bus.SandboxStatus[]): string {
  return table([
    ['ID', 'STATE', 'AGENT', 'BACKEND', 'HOST', 'CONTAINERS', 'CREATED'],
    ...list.map((s) => [
      s.id ?? '', s.state === 'lost' ? `lost since ${s.lostSince}` : (s.state ?? ''), s.agent ?? '', s.backend ?? '', s.host ?? '',
      String(s.containers?.length ?? 0), s.createdAt ?? '',
    ]),
  ]);
}

function containerRows(list: Bus.ContainerStatus[]): string {
  return table([
    ['ID', 'STATE', 'PID', 'EXIT', 'COMMAND'],
    ...list.map((c) => [
      c.id ?? '', c.state ?? '', String(c.pid ?? 0), c.hasExitStatus ? String(c.exitStatus) : '-', (c.spec?.args ?? []).join(' '),
    ]),
  ]);
}

function describeSandbox(s: Bus.SandboxStatus): string {
  let out = sandboxRows([s]);
  if (s.state === 'failed') out += `\nfailed: ${s.failureReason} since ${s.failedAt}: ${s.failureMessage}`;
  if (s.state === 'lost') out += `\nlost: host ${s.host} is lost since ${s.lostSince} (\`sandbox forget ${s.id}\` drops the record)`;
  if (s.backend === 'namespace') out += `\nuser namespace: ${s.userNamespace ? 'on' : 'off'}`;
  if (s.containers?.length) out += `\n\n${containerRows(s.containers)}`;
  return out;
}

function eventLine(e: Bus.Event): string {
  // Host events (lost, forget, reap) are not numbered and have no state.
  if (e.seq === undefined && e.state === undefined) return `${e.time} host ${e.host} ${e.type}${e.sandboxId ? ` sandbox ${e.sandboxId}` : ''}: ${e.message ?? ''}`;
  const who = e.containerId ? `container ${e.containerId}${e.execId ? ` exec ${e.execId}` : ''}` : 'sandbox';
  let line = `${e.time} ${e.sandboxId} #${e.seq} ${who} ${e.type} -> ${e.state}`;
  if (e.exitStatus !== undefined && (e.type === 'exit' || e.type === 'fail')) line += `, status ${e.exitStatus}`;
  if (e.pid) line += `, pid ${e.pid}`;
  if (e.reason) line += `, reason ${e.reason}`;
  if (e.message) line += `: ${e.message}`;
  return line;
}

// ---- commands -------------------------------------------------------------------

const print = (g: Global, value: unknown, text: () => string) => {
  process.stdout.write(`${g.json ? JSON.stringify(value, null, 2) : text()}\n`);
};

const sandboxVerbs = { start: 'SandboxStart', stop: 'SandboxStop', pause: 'SandboxPause', resume: 'SandboxResume', status: 'SandboxStatus' } as const;
const containerVerbs = { start: 'ContainerStart', stop: 'ContainerStop', pause: 'ContainerPause', resume: 'ContainerResume', status: 'ContainerStatus' } as const;

async function sandboxCommand(client: VcClient, g: Global, args: string[]): Promise<void> {
  const [verb, ...rest] = args;
  const [flags] = splitDashDash(rest);
  switch (verb) {
    case 'create': {
      const { values, positionals } = parse(flags, {
        agent: { type: 'string' }, backend: { type: 'string' }, hostname: { type: 'string' },
        'agent-config': { type: 'string' }, host: { type: 'string' }, start: { type: 'boolean' }, attach: { type: 'string', multiple: true },
        'monitor-interval': { type: 'string' }, 'monitor-deadline': { type: 'string' }, policy: { type: 'string' },
        annotation: { type: 'string', multiple: true },
      });
      const id = positionals[0];
      if (!id) throw new UsageError('sandbox create needs an id');
      let agentConfig: Record<string, unknown> | undefined;
      if (values['agent-config']) {
        try {
          agentConfig = JSON.parse(values['agent-config']);
        } catch {
          throw new UsageError('--agent-config must be JSON');
        }
      }
      const monitor: Bus.MonitorSpec = {};
      if (values['monitor-interval']) monitor.intervalMs = Number(values['monitor-interval']);
      if (values['monitor-deadline']) monitor.deadlineMs = Number(values['monitor-deadline']);
      if (values.policy) monitor.policy = values.policy;
      const sandbox: Bus.SandboxSpec = { id };
      if (values.agent) sandbox.agent = values.agent;
      if (values.backend) sandbox.backend = values.backend;
      if (values.hostname) sandbox.hostname = values.hostname;
      if (agentConfig) sandbox.agentConfig = agentConfig;
      if (Object.keys(monitor).length) sandbox.monitor = monitor;
      if (values.annotation) sandbox.annotations = keyValues(values.annotation, '--annotation');
      if (values.attach) {
        const names: Record<string, keyof Bus.AttachSpec> = { grpc: 'grpcSocket', ctl: 'ctlSocket', tty: 'ttySocket' };
        sandbox.attach = {};
        for (const [key, path] of Object.entries(keyValues(values.attach, '--attach'))) {
          const field = names[key];
          if (!field) throw new UsageError(`--attach takes grpc=PATH (kata) or ctl=PATH and tty=PATH (hyperstart), not ${key}`);
          sandbox.attach[field] = resolve(path);
        }
      }
      const body = { sandbox, start: !!values.start };
      const reply = values.host ? await client.call('HostSandboxCreate', { host: values.host }, body) : await client.call('SandboxCreate', {}, body);
      print(g, reply.sandbox, () => describeSandbox(reply.sandbox!));
      return;
    }
    case 'list': {
      const { values } = parse(flags, { host: { type: 'string' } });
      const reply = await client.call('SandboxList', {}, values.host ? { host: values.host } : {});
      print(g, reply.sandboxes, () => sandboxRows(reply.sandboxes ?? []));
      return;
    }
    case 'delete': {
      const { values, positionals } = parse(flags, { force: { type: 'boolean' } });
      const id = need(positionals[0], 'sandbox delete needs an id');
      await client.call('SandboxDelete', { sid: id }, values.force ? { force: true } : {});
      print(g, { id, deleted: true }, () => `sandbox ${id} deleted`);
      return;
    }
    case 'forget': {
      const { positionals } = parse(flags, {});
      const id = need(positionals[0], 'sandbox forget needs an id');
      await client.call('SandboxForget', {}, { id });
      print(g, { id, forgotten: true }, () => `sandbox ${id} forgotten: its id is free`);
      return;
    }
    case 'start':
    case 'stop':
    case 'pause':
    case 'resume':
    case 'status': {
      const { positionals } = parse(flags, {});
      const id = need(positionals[0], `sandbox ${verb} needs an id`);
      const reply = await client.call(sandboxVerbs[verb], { sid: id });
      print(g, reply.sandbox, () => describeSandbox(reply.sandbox!));
      return;
    }
    default:
      throw new UsageError(`unknown sandbox command ${verb ?? ''}`);
  }
}

function need(value: string | undefined, message: string): string {
  if (!value) throw new UsageError(message);
  return value;
}

async function containerCommand(client: VcClient, g: Global, args: string[]): Promise<void> {
  const [verb, ...rest] = args;
  const [flags, command] = splitDashDash(rest);
  const processFlags = {
    env: { type: 'string', multiple: true }, cwd: { type: 'string' }, user: { type: 'string' }, tty: { type: 'boolean' },
  } as const;
  const ids = (positionals: string[]) => [need(positionals[0], `container ${verb} needs a sandbox id`), need(positionals[1], `container ${verb} needs a container id`)] as const;
  switch (verb) {
    case 'create': {
      const { values, positionals } = parse(flags, { ...processFlags, rootfs: { type: 'string' }, privileged: { type: 'boolean' } });
      const [sid, cid] = ids(positionals);
      const container: Bus.ContainerSpec = { id: cid, args: command };
      if (values.env) container.env = values.env;
      if (values.cwd) container.cwd = values.cwd;
      if (values.user) container.user = values.user;
      if (values.tty) container.terminal = true;
      if (values.rootfs) container.rootfs = resolve(values.rootfs);
      if (values.privileged) container.privileged = true;
      const reply = await client.call('ContainerCreate', { sid }, { container });
      print(g, reply.container, () => containerRows([reply.container!]));
      return;
    }
    case 'kill': {
      const { values, positionals } = parse(flags, { all: { type: 'boolean' } });
      const [sid, cid] = ids(positionals);
      const signal = signalNumber(positionals[2]);
      await client.call('ContainerKill', { sid, cid }, { signal, all: !!values.all });
      print(g, { signal }, () => `signal ${signal} sent to container ${cid}${values.all ? ' (all processes)' : ''}`);
      return;
    }
    case 'delete': {
      const { values, positionals } = parse(flags, { force: { type: 'boolean' } });
      const [sid, cid] = ids(positionals);
      await client.call('ContainerDelete', { sid, cid }, values.force ? { force: true } : {});
      print(g, { id: cid, deleted: true }, () => `container ${cid} deleted`);
      return;
    }
    case 'exec': {
      const { values, positionals } = parse(flags, { ...processFlags, 'exec-id': { type: 'string' } });
      const [sid, cid] = ids(positionals);
      if (!command.length) throw new UsageError('container exec needs a command after --');
      const body: Bus.ContainerExecRequest = { args: command };
      if (values['exec-id']) body.execId = values['exec-id'];
      if (values.env) body.env = values.env;
      if (values.cwd) body.cwd = values.cwd;
      if (values.user) body.user = values.user;
      if (values.tty) body.terminal = true;
      const reply = await client.call('ContainerExec', { sid, cid }, body);
      print(g, { execId: reply.execId, pid: reply.pid }, () => `exec ${reply.execId} started, pid ${reply.pid}`);
      return;
    }
    case 'ps': {
      const { values, positionals } = parse(flags, { format: { type: 'string' } });
      const [sid, cid] = ids(positionals);
      const body: Bus.ContainerPsRequest = { format: values.format ?? 'table' };
      if (command.length) body.args = command;
      const reply = await client.call('ContainerPs', { sid, cid }, body);
      process.stdout.write(reply.output?.endsWith('\n') ? reply.output : `${reply.output ?? ''}\n`);
      return;
    }
    case 'wait': {
      const { values, positionals } = parse(flags, { 'exec-id': { type: 'string' }, 'timeout-ms': { type: 'string' } });
      const [sid, cid] = ids(positionals);
      const body: Bus.ContainerWaitRequest = {};
      if (values['exec-id']) body.execId = values['exec-id'];
      if (values['timeout-ms']) body.timeoutMs = Number(values['timeout-ms']);
      const reply = await client.call('ContainerWait', { sid, cid }, body, { timeoutMs: Math.max(g.timeout, (body.timeoutMs ?? 0) + 5_000) });
      print(g, { exitStatus: reply.exitStatus, exitedAt: reply.exitedAt }, () => `exit status ${reply.exitStatus} at ${reply.exitedAt}`);
      process.exitCode = reply.exitStatus ?? 0;
      return;
    }
    case 'logs': {
      const { values, positionals } = parse(flags, { 'exec-id': { type: 'string' }, tail: { type: 'string' } });
      const [sid, cid] = ids(positionals);
      const body: Bus.ContainerLogsRequest = {};
      if (values['exec-id']) body.execId = values['exec-id'];
      if (values.tail) body.tailBytes = Number(values.tail);
      const reply = await client.call('ContainerLogs', { sid, cid }, body);
      if (g.json) print(g, { stdout: reply.stdout, stderr: reply.stderr, truncated: reply.truncated }, () => '');
      else {
        process.stdout.write(reply.stdout ?? '');
        process.stderr.write(reply.stderr ?? '');
      }
      return;
    }
    case 'stats': {
      const { positionals } = parse(flags, {});
      const [sid, cid] = ids(positionals);
      const reply = await client.call('ContainerStats', { sid, cid });
      const st = reply.stats ?? {};
      print(g, st, () =>
        table([
          ['CPU (ms)', 'MEMORY', 'MEMORY LIMIT', 'PIDS', 'PIDS LIMIT'],
          [String(Math.round((st.cpuUsageNs ?? 0) / 1e6)), String(st.memoryUsageBytes ?? 0), String(st.memoryLimitBytes ?? 0), String(st.pidsCurrent ?? 0), String(st.pidsLimit ?? 0)],
        ]),
      );
      return;
    }
    case 'start':
    case 'stop':
    case 'pause':
    case 'resume':
    case 'status': {
      const { positionals } = parse(flags, {});
      const [sid, cid] = ids(positionals);
      const reply = await client.call(containerVerbs[verb], { sid, cid });
      print(g, reply.container, () => containerRows([reply.container!]));
      return;
    }
    default:
      throw new UsageError(`unknown container command ${verb ?? ''}`);
  }
}

async function eventsCommand(client: VcClient, g: Global, args: string[]): Promise<void> {
  const { values } = parse(args, { sandbox: { type: 'string' }, follow: { type: 'boolean' }, since: { type: 'string' } });
  const since = values.since === undefined ? undefined : Number(values.since);
  if (since !== undefined && !(Number.isInteger(since) && since >= 0)) throw new UsageError('--since takes a whole number');
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  const events = client.events({ sandboxId: values.sandbox, since, follow: !!values.follow, signal: stop.signal });
  for await (const e of events) {
    process.stdout.write(`${g.json ? JSON.stringify({ streamSeq: e.streamSeq, ...e.event }) : eventLine(e.event)}\n`);
  }
}

function statechartsCommand(args: string[]): void {
  const { values } = parse(args, { format: { type: 'string' }, machine: { type: 'string', multiple: true } });
  const format = (values.format ?? 'json') as ChartFormat;
  if (!chartFormats.includes(format)) throw new UsageError(`--format takes ${chartFormats.join(', ')}`);
  const names = (values.machine ?? machineNames) as MachineName[];
  for (const n of names) if (!machineNames.includes(n)) throw new UsageError(`unknown machine ${n}: use ${machineNames.join(', ')}`);
  const text = exportCharts(format, names);
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

async function inspectCommand(client: VcClient, g: Global, args: string[]): Promise<void> {
  const { positionals } = parse(args, {});
  const sid = need(positionals[0], 'inspect needs a sandbox id');
  // Subscribed before asking, so no snapshot between the answer and the loop is lost.
  const sub = client.nc.subscribe(subjects.inspectSandbox(sid));
  try {
    // NotFound comes back at once when the sandbox does not exist.
    const { sandbox } = await client.call('SandboxStatus', { sid });
    const host = sandbox?.host ?? '';
    const answers = await client.discover('INFO', Math.min(g.timeout, 2000), (a) => hostOf(a) === host);
    const publishes = publishesInspection(answers.find((a) => hostOf(a) === host));
    if (publishes === false) {
      throw new CommandError('FailedPrecondition', `host ${host} does not publish inspection: start it with VC_INSPECT=1`);
    }
    process.stderr.write(
      publishes
        ? `following the actors of sandbox ${sid} on host ${host} (Ctrl-C stops)\n`
        : `host ${host} did not say whether it publishes inspection (VC_INSPECT=1); following anyway\n`,
    );
  } catch (err) {
    sub.unsubscribe();
    throw err;
  }
  process.once('SIGINT', () => sub.unsubscribe());
  for await (const m of sub) {
    const i = decodeTrusted<Bus.Inspection>(m.data);
    process.stdout.write(g.json ? `${JSON.stringify(i)}\n` : `${i.time} ${i.path || i.actorId} ${i.event} -> ${i.state} (${i.status})\n`);
  }
}

/** Serves the live page until Ctrl-C; the page itself lives in ui/. */
async function uiCommand(client: VcClient, g: Global, args: string[]): Promise<void> {
  const { values } = parse(args, { port: { type: 'string' } });
  // Loaded only here: other commands do not pay for the page's server.
  const { DEFAULT_UI_PORT, startUiServer } = await import('../ui/server.js');
  const { pino } = await import('pino');
  const port = values.port === undefined ? DEFAULT_UI_PORT : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('--port takes a port number (0: any free port)');
  const ui = await startUiServer({ client, port, log: pino({ name: 'virtactors-ui', level: process.env.LOG_LEVEL ?? 'warn' }) });
  print(g, { url: ui.url }, () => `virtactors ui: ${ui.url}  (bus ${g.server}; Ctrl-C stops)`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await ui.close();
}

async function hostsCommand(client: VcClient, g: Global): Promise<void> {
  const found = await client.discover('INFO', Math.min(g.timeout, 1000));
  const inspects = (f: Record<string, unknown>) => ({ true: 'yes', false: 'no', undefined: '?' })[String(publishesInspection(f)) as 'true' | 'false' | 'undefined'];
  const meta = (f: Record<string, unknown>) => (f.metadata ?? {}) as Record<string, string>;
  // The warm pool of VMs, where the host keeps one: ready/size (booting).
  const pool = (f: Record<string, unknown>) => {
    const m = meta(f);
    return m['vm.pool.size'] ? `${m['vm.pool.ready']}/${m['vm.pool.size']} ready${m['vm.pool.booting'] !== '0' ? `, ${m['vm.pool.booting']} booting` : ''}` : '-';
  };
  print(g, found, () =>
    table([
      ['HOST', 'VERSION', 'ENDPOINTS', 'INSPECT', 'VM POOL', 'ID'],
      ...found.map((f) => [hostOf(f), String(f.version), String((f.endpoints as unknown[]).length), inspects(f), pool(f), String(f.id)]),
    ]),
  );
}

async function credsCreate(client: VcClient, g: Global, args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { role: { type: 'string' }, out: { type: 'string' } });
  const name = need(positionals[0], 'creds create needs a name');
  if (!isRole(values.role)) throw new UsageError(`creds create needs --role ${ROLES.join('|')}`);
  const out = resolve(values.out ?? `${name}.creds`);
  if (existsSync(out)) throw new UsageError(`${out} exists; not overwriting it`);
  writePrivateFile(out, await client.createCreds(values.role, name), true);
  print(g, { name, role: values.role, file: out }, () => `${values.role} credentials for ${name} written to ${out} (mode 0600)`);
}

/** `creds init`: a new authority on this machine; no server is involved. */
async function credsInit(g: Global, args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { routes: { type: 'string' } });
  const dir = resolve(need(positionals[0], 'creds init needs a directory'));
  const { created } = await ensureAuthority(dir);
  const files = authFiles(dir);
  const written = [files.serverConfig, files.creds('host'), files.creds('operator')];
  if (values.routes) {
    writeClusterAuth(dir, values.routes.split(',').filter(Boolean));
    written.push(files.clusterConfig);
  }
  print(g, { dir, created, files: written }, () =>
    `${created ? 'created' : 'kept the existing'} authority in ${dir}\n${written.map((f) => `  ${f}`).join('\n')}`,
  );
}

/** Takes the global flags out wherever they stand (before a `--`). */
function extractGlobals(argv: string[]): { globals: string[]; rest: string[] } {
  const [flags, after] = splitDashDash(argv);
  const globals: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < flags.length; i++) {
    const a = flags[i]!;
    if (a === '--json' || a === '--help' || a === '-h') globals.push(a === '-h' ? '--help' : a);
    else if (a === '--server' || a === '--timeout' || a === '--creds') globals.push(a, flags[++i] ?? '');
    else if (a.startsWith('--server=') || a.startsWith('--timeout=') || a.startsWith('--creds=')) globals.push(a);
    else rest.push(a);
  }
  return { globals, rest: argv.includes('--') ? [...rest, '--', ...after] : rest };
}

export async function main(argv: string[]): Promise<number> {
  const { globals, rest: commandArgs } = extractGlobals(argv);
  try {
    const { values } = parse(globals, {
      server: { type: 'string' }, creds: { type: 'string' }, json: { type: 'boolean' }, timeout: { type: 'string' }, help: { type: 'boolean' },
    });
    if (values.help || commandArgs[0] === 'help') {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    if (commandArgs[0] === 'statecharts') {
      statechartsCommand(commandArgs.slice(1));
      return 0;
    }
    if (!['sandbox', 'container', 'events', 'hosts', 'inspect', 'creds', 'ui'].includes(commandArgs[0] ?? '')) {
      throw new UsageError(commandArgs[0] ? `unknown command ${commandArgs[0]}` : 'missing command');
    }
    const [command, ...rest] = commandArgs;
    const target = discoverBus({ server: values.server, creds: values.creds });
    const g: Global = { server: target.servers.join(','), json: !!values.json, timeout: Number(values.timeout ?? 60_000) };
    if (command === 'creds' && rest[0] === 'init') {
      await credsInit(g, rest.slice(1));
      return 0;
    }
    if (command === 'creds' && rest[0] !== 'create') throw new UsageError(`unknown creds command ${rest[0] ?? ''}`);
    let client: VcClient;
    try {
      client = await VcClient.connect({ ...target, name: 'virtactors-cli', timeoutMs: g.timeout });
    } catch (err) {
      const why = err instanceof AuthorizationError
        ? `${err.message}: ${target.creds ? `the server does not accept ${target.creds}` : 'the server requires credentials (--creds FILE or NATS_CREDS)'}`
        : (err as Error).message;
      throw new CommandError('Unavailable', `cannot connect to ${g.server}: ${why}`);
    }
    try {
      if (command === 'creds') await credsCreate(client, g, rest.slice(1));
      else if (command === 'sandbox') await sandboxCommand(client, g, rest);
      else if (command === 'container') await containerCommand(client, g, rest);
      else if (command === 'events') await eventsCommand(client, g, rest);
      else if (command === 'inspect') await inspectCommand(client, g, rest);
      else if (command === 'ui') await uiCommand(client, g, rest);
      else await hostsCommand(client, g);
    } finally {
      await client.nc.close();
    }
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`virtactors: ${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    if (err instanceof CommandError && err.code === ErrorCode.PermissionDenied) {
      // The message says it all: "permission denied: role viewer may not ...".
      process.stderr.write(`virtactors: ${err.message}\n`);
      return 1;
    }
    if (err instanceof CommandError) {
      process.stderr.write(`virtactors: ${err.code}: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`virtactors: ${(err as Error).message}\n`);
    return 1;
  }
}

// A closed pipe (`virtactors events | head`) ends the output, not with a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});
process.exitCode = await main(process.argv.slice(2));
