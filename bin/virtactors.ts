#!/usr/bin/env node
// The virtactors CLI: commander declares the commands, their flags and their help; each
// action sends bus requests and prints a table (or JSON with --json, ids with -q). It
// holds no logic of its own beyond that.
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { AuthorizationError } from '@nats-io/transport-node';
import { CommandError, VcClient } from '../bus/client.js';
import { discoverBus } from '../bus/connection.js';
import { authFiles, ensureAuthority, writeClusterAuth, writePrivateFile } from '../bus/auth-files.js';
import { ROLES, type Role } from '../bus/roles.js';
import { decodeTrusted } from '../bus/codec.js';
import { ErrorCode, VcError } from '../bus/errors.js';
import { checkId, subjects } from '../bus/subjects.js';
import { hostOf, publishesInspection } from '../bus/service-discovery.js';
import type * as Bus from '../bus/messages.gen.js';
import { chartFormats, exportCharts, machineNames, type ChartFormat, type MachineName } from '../charts/index.js';
import { collect, jsonObject, keyValue, oneOf, packageVersion, signalNumber, size, whole } from './flags.js';
import { containerRows, describeSandbox, eventLine, pidText, sandboxRows, statsTable, table } from './format.js';
import { follow, forwardStdin, type Followed } from './follow.js';
import { readBundle } from './bundle.js';
import { forwardResize, localSize, rawMode, stdinIsTerminal } from './terminal.js';

export { signalNumber };

/** A usage error found after parsing (exit 2, like commander's own). */
class UsageError extends Error {}

interface Global {
  server?: string;
  creds?: string;
  json?: boolean;
  quiet?: boolean;
  timeout: number;
}

const globals = (cmd: Command) => cmd.optsWithGlobals() as Global & Record<string, unknown>;

/** Prints JSON with --json, the ids with -q, the text otherwise. */
function print(g: Global, value: unknown, text: () => string, ids?: () => string[]): void {
  const out = g.json ? JSON.stringify(value, null, 2) : g.quiet && ids ? ids().join('\n') : text();
  if (out !== '') process.stdout.write(`${out}\n`);
}

// ---- connection ------------------------------------------------------------------

async function connect(g: Global): Promise<{ client: VcClient; server: string }> {
  const target = discoverBus({ server: g.server, creds: g.creds });
  const server = target.servers.join(',');
  try {
    return { client: await VcClient.connect({ ...target, name: 'virtactors-cli', timeoutMs: g.timeout }), server };
  } catch (err) {
    const why = err instanceof AuthorizationError
      ? `${err.message}: ${target.creds ? `the server does not accept ${target.creds}` : 'the server requires credentials (--creds FILE or NATS_CREDS)'}`
      : (err as Error).message;
    throw new CommandError('Unavailable', `cannot connect to ${server}: ${why}`);
  }
}

/** An action with a bus client, closed afterwards. */
const withClient = <A extends unknown[]>(fn: (client: VcClient, g: Global, ...args: A) => Promise<void>) =>
  async (...args: [...A, Record<string, unknown>, Command]): Promise<void> => {
    const cmd = args.at(-1) as Command;
    const g = globals(cmd);
    const { client } = await connect(g);
    try {
      await fn(client, g, ...(args.slice(0, -1) as unknown as A));
    } finally {
      await client.nc.close();
    }
  };

/** Ids are checked here so that a bad one gets the rule, not a subject error of the bus. */
function id(kind: string, value: string): string {
  try {
    return checkId(kind, value);
  } catch (err) {
    throw new UsageError((err as VcError).message);
  }
}

/** The same check as an argument parser: refused before anything connects. */
const idArg = (kind: string) => (value: string): string => {
  try {
    return checkId(kind, value);
  } catch (err) {
    throw new InvalidArgumentError((err as VcError).message);
  }
};

// ---- specs from flags --------------------------------------------------------------

interface SandboxFlags {
  agent?: string;
  backend?: string;
  hostname?: string;
  agentConfig?: Record<string, unknown>;
  monitorInterval?: number;
  monitorDeadline?: number;
  policy?: string;
  annotation?: Record<string, string>;
  attach?: Record<string, string>;
}

function sandboxSpec(sid: string, o: SandboxFlags): Bus.SandboxSpec {
  const sandbox: Bus.SandboxSpec = { id: sid };
  if (o.agent) sandbox.agent = o.agent;
  if (o.backend) sandbox.backend = o.backend;
  if (o.hostname) sandbox.hostname = o.hostname;
  if (o.agentConfig) sandbox.agentConfig = o.agentConfig;
  const monitor: Bus.MonitorSpec = {};
  if (o.monitorInterval !== undefined) monitor.intervalMs = o.monitorInterval;
  if (o.monitorDeadline !== undefined) monitor.deadlineMs = o.monitorDeadline;
  if (o.policy) monitor.policy = o.policy;
  if (Object.keys(monitor).length) sandbox.monitor = monitor;
  if (o.annotation) sandbox.annotations = o.annotation;
  if (o.attach) {
    const names: Record<string, keyof Bus.AttachSpec> = { grpc: 'grpcSocket', ctl: 'ctlSocket', tty: 'ttySocket' };
    sandbox.attach = {};
    for (const [key, path] of Object.entries(o.attach)) {
      const field = names[key];
      if (!field) throw new UsageError(`--attach takes grpc=PATH (kata) or ctl=PATH and tty=PATH (hyperstart), not ${key}=`);
      sandbox.attach[field] = resolve(path);
    }
  }
  return sandbox;
}

const sandboxOptions = (c: Command) =>
  c
    .addOption(new Option('--agent <type>', 'guest agent').choices(['noop', 'hyperstart', 'kata']))
    .addOption(new Option('--backend <type>', 'where the guest runs').choices(['none', 'namespace', 'process', 'vm', 'external']))
    .option('--hostname <name>', "the sandbox's hostname")
    .option('--agent-config <json>', 'agent configuration (a JSON object)', jsonObject)
    .option('--host <host>', 'create it on this runtime host')
    .option('--monitor-interval <ms>', 'milliseconds between health checks', whole('a whole number of milliseconds', 10, 2 ** 32 - 1))
    .option('--monitor-deadline <ms>', 'milliseconds a health check may take', whole('a whole number of milliseconds', 10, 2 ** 32 - 1))
    .option('--policy <policy>', 'what follows a failure: keep | stop-and-delete', oneOf(['keep', 'stop-and-delete']))
    .option('--annotation <key=value>', 'an annotation (repeatable), e.g. io.virtactors.memory-limit=32m', keyValue)
    .option('--attach <name=path>', 'external backend: grpc=PATH (kata), ctl=PATH and tty=PATH (hyperstart)', keyValue);

interface ProcessFlags {
  env?: string[];
  cwd?: string;
  user?: string;
  tty?: boolean;
}

/** `attached`: the command follows the process (run, exec), so -t also attaches our terminal. */
const processOptions = (c: Command, attached = false) =>
  c
    .option('-e, --env <key=value>', 'an environment variable (repeatable)', collect)
    .option('-w, --cwd <dir>', 'working directory inside the container')
    .option('-u, --user <uid[:gid]>', 'user to run as')
    .option('-t, --tty', attached
      ? 'give the process a terminal of our size; when our stdin is a terminal, it goes raw while the process runs (keys, Ctrl-C included, go to the process) and our size follows, as docker -it; otherwise nothing is made raw'
      : 'give the process a terminal (of our size, when we are at one)');

interface ContainerFlags extends ProcessFlags {
  rootfs?: string;
  privileged?: boolean;
  bundle?: string;
  memory?: number;
  pidsLimit?: number;
}

const containerOptions = (c: Command, attached = false) =>
  processOptions(c, attached)
    .option('--rootfs <dir>', 'root filesystem (a directory on the runtime host); default: a minimal busybox root')
    .option('--bundle <dir>', 'an OCI bundle: DIR/config.json gives the process, root, hostname, mounts and limits')
    .option('--privileged', 'relax the default confinement (operators only)')
    .option('-m, --memory <size>', "the container's memory limit (32m, 1g); kata agent", size)
    .option('--pids-limit <n>', "the container's process limit; kata agent", whole('a whole number of processes', 1));

function containerSpec(cid: string, command: string[], o: ContainerFlags): Bus.ContainerSpec {
  const container: Bus.ContainerSpec = o.bundle ? { ...readBundle(o.bundle), id: cid } : { id: cid };
  if (command.length) container.args = command;
  if (!container.args?.length) throw new UsageError('a container needs a command: give it after the ids (after -- when it has flags), or a bundle whose config.json has process.args');
  if (o.env) container.env = [...(container.env ?? []), ...o.env];
  if (o.cwd) container.cwd = o.cwd;
  if (o.user) container.user = o.user;
  if (o.tty) container.terminal = true;
  if (o.tty) sizeTerminal(container);
  if (o.rootfs) container.rootfs = resolve(o.rootfs);
  if (o.privileged) container.privileged = true;
  if (o.memory || o.pidsLimit) {
    container.resources = { ...container.resources };
    if (o.memory) container.resources.memoryLimitBytes = o.memory;
    if (o.pidsLimit) container.resources.pidsLimit = o.pidsLimit;
  }
  return container;
}

/** A process with a terminal starts at our terminal's size (when we are at one). */
function sizeTerminal(process: { consoleSize?: Bus.ConsoleSize }): void {
  const size = localSize();
  if (size) process.consoleSize = size;
}

/**
 * While a process runs: our stdin to it (-i, or -t at a terminal, raw then), our
 * terminal's size to its terminal (-t). Returns what ends all of it, our terminal's mode
 * put back first.
 */
function attach(client: VcClient, sid: string, cid: string, execId: string | undefined, o: { tty?: boolean; interactive?: boolean }, size: Bus.ConsoleSize | undefined): () => void {
  const raw = !!o.tty && stdinIsTerminal();
  const restore = raw ? rawMode() : () => {};
  const stopResize = o.tty ? forwardResize(client, sid, cid, execId, size) : () => {};
  const stopInput = o.interactive || raw ? forwardStdin(client, sid, cid, execId) : undefined;
  return () => {
    stopResize();
    restore();
    stopInput?.();
  };
}

/**
 * Creation on a named host. Across the accounts of a server with credentials a subject
 * nobody serves gets no "no responders", so discovery runs beside the request: a host
 * that does not answer it is named as missing, with the hosts there are.
 */
async function createOn(client: VcClient, host: string | undefined, body: Bus.SandboxCreateRequest): Promise<Bus.SandboxReply> {
  if (!host) return client.call('SandboxCreate', {}, body);
  id('host', host);
  const reply = client.call('HostSandboxCreate', { host }, body);
  reply.catch(() => {});
  const answers = await client.discover('INFO', 1000, (a) => hostOf(a) === host);
  const hosts = answers.map(hostOf).filter(Boolean);
  if (!hosts.includes(host)) {
    throw new CommandError(ErrorCode.NotFound, hosts.length
      ? `no runtime host named ${host}: the hosts on this bus are ${hosts.sort().join(', ')}`
      : `no runtime host named ${host}: no host answers on this bus (is \`npm start\` running?)`);
  }
  return reply;
}

// ---- sandbox -----------------------------------------------------------------------

function sandboxCommands(program: Command): void {
  const sandbox = program.command('sandbox').description('create, drive and delete sandboxes');
  sandboxOptions(sandbox.command('create').description('create a sandbox').argument('<sid>', 'sandbox id', idArg('sandbox')))
    .option('--start', 'start it once created')
    .action(withClient(async (client, g, sid: string, o: SandboxFlags & { host?: string; start?: boolean }) => {
      const reply = await createOn(client, o.host, { sandbox: sandboxSpec(id('sandbox', sid), o), start: !!o.start });
      print(g, reply.sandbox, () => describeSandbox(reply.sandbox!), () => [reply.sandbox!.id!]);
    }));
  const verbs = { start: 'SandboxStart', stop: 'SandboxStop', pause: 'SandboxPause', resume: 'SandboxResume', status: 'SandboxStatus' } as const;
  for (const [verb, name] of Object.entries(verbs)) {
    sandbox.command(verb).description(`${verb === 'status' ? 'show' : verb} a sandbox${verb === 'status' ? ' and its containers' : ''}`).argument('<sid>', 'sandbox id', idArg('sandbox'))
      .action(withClient(async (client, g, sid: string) => {
        const reply = await client.call(name, { sid: id('sandbox', sid) });
        print(g, reply.sandbox, () => describeSandbox(reply.sandbox!), () => [reply.sandbox!.id!]);
      }));
  }
  sandbox.command('delete').description('delete a sandbox').argument('<sid>', 'sandbox id', idArg('sandbox')).option('-f, --force', 'stop it and its containers first')
    .action(withClient(async (client, g, sid: string, o: { force?: boolean }) => {
      await client.call('SandboxDelete', { sid: id('sandbox', sid) }, o.force ? { force: true } : {});
      print(g, { id: sid, deleted: true }, () => `sandbox ${sid} deleted`, () => [sid]);
    }));
  sandbox.command('forget').description('drop the record of a sandbox whose host is lost, freeing its id (operators only)').argument('<sid>', 'sandbox id', idArg('sandbox'))
    .action(withClient(async (client, g, sid: string) => {
      await client.call('SandboxForget', {}, { id: id('sandbox', sid) });
      print(g, { id: sid, forgotten: true }, () => `sandbox ${sid} forgotten: its id is free`, () => [sid]);
    }));
  sandbox.command('list').alias('ls').description('list sandboxes').option('--host <host>', 'only those of this host')
    .action(withClient(async (client, g, o: { host?: string }) => {
      const list = await client.listSandboxes(o.host ? { host: o.host } : {});
      print(g, list, () => sandboxRows(list), () => list.map((s) => s.id!));
    }));
}

// ---- container ---------------------------------------------------------------------

function containerCommands(program: Command): void {
  const container = program.command('container').description('create, drive and delete the containers of a sandbox');
  const ids = (c: Command) => c.argument('<sid>', 'sandbox id', idArg('sandbox')).argument('<cid>', 'container id', idArg('container'));
  const both = (sid: string, cid: string) => ({ sid: id('sandbox', sid), cid: id('container', cid) });

  containerOptions(ids(container.command('create').description('create a container (its command after the ids, after -- when it has flags)')))
    .argument('[command...]', 'the command and its arguments')
    .hook('preAction', (_p, c) => void containerSpec(String(c.processedArgs[1]), c.processedArgs[2] as string[], c.opts()))
    .action(withClient(async (client, g, sid: string, cid: string, command: string[], o: ContainerFlags) => {
      const p = both(sid, cid);
      const reply = await client.call('ContainerCreate', { sid: p.sid }, { container: containerSpec(p.cid, command, o) });
      print(g, reply.container, () => containerRows([reply.container!]), () => [cid]);
    }));

  const verbs = { start: 'ContainerStart', stop: 'ContainerStop', pause: 'ContainerPause', resume: 'ContainerResume', status: 'ContainerStatus' } as const;
  for (const [verb, name] of Object.entries(verbs)) {
    ids(container.command(verb).description(`${verb === 'status' ? 'show' : verb} a container`))
      .action(withClient(async (client, g, sid: string, cid: string) => {
        const reply = await client.call(name, both(sid, cid));
        print(g, reply.container, () => containerRows([reply.container!]), () => [cid]);
      }));
  }

  ids(container.command('kill').description('send a signal to a container'))
    .argument('[signal]', 'name or number (default TERM)', signalNumber)
    .option('-a, --all', 'to all its processes')
    .action(withClient(async (client, g, sid: string, cid: string, signal: number | undefined, o: { all?: boolean }) => {
      const sig = signal ?? signalNumber(undefined);
      await client.call('ContainerKill', both(sid, cid), { signal: sig, all: !!o.all });
      print(g, { signal: sig }, () => `signal ${sig} sent to container ${cid}${o.all ? ' (all processes)' : ''}`);
    }));

  ids(container.command('delete').alias('rm').description('delete a container')).option('-f, --force', 'stop it first')
    .action(withClient(async (client, g, sid: string, cid: string, o: { force?: boolean }) => {
      await client.call('ContainerDelete', both(sid, cid), o.force ? { force: true } : {});
      print(g, { id: cid, deleted: true }, () => `container ${cid} deleted`, () => [cid]);
    }));

  processOptions(ids(container.command('exec').description('run a process in a container: by default wait for it, stream its output, exit with its status')), true)
    .argument('<command...>', 'the command and its arguments (after -- when it has flags)')
    .option('--exec-id <id>', 'id of the exec (default: generated)', idArg('exec'))
    .option('-d, --detach', 'start it and return (prints its id and pid)')
    .option('-i, --interactive', 'forward our stdin to it (its stdin closes at our end of input)')
    .action(withClient(async (client, g, sid: string, cid: string, command: string[], o: ProcessFlags & { execId?: string; detach?: boolean; interactive?: boolean }) => {
      const p = both(sid, cid);
      const body: Bus.ContainerExecRequest = { args: command };
      if (o.execId) body.execId = id('exec', o.execId);
      if (o.env) body.env = o.env;
      if (o.cwd) body.cwd = o.cwd;
      if (o.user) body.user = o.user;
      if (o.tty) {
        body.terminal = true;
        sizeTerminal(body);
      }
      const reply = await client.call('ContainerExec', p, body);
      if (o.detach) {
        print(g, { execId: reply.execId, pid: reply.pid }, () => `exec ${reply.execId} started, pid ${pidText(reply.pid, reply.pidUnknown)}`, () => [reply.execId!]);
        return;
      }
      // Ctrl-C stops following, not the exec (the bus cannot signal an exec alone).
      const stop = () => {
        process.stderr.write(`virtactors: stopped following exec ${reply.execId}; it keeps running (virtactors container wait ${sid} ${cid} --exec-id ${reply.execId})\n`);
        process.exit(130);
      };
      process.once('SIGINT', stop);
      const detach = attach(client, p.sid, p.cid, reply.execId!, o, body.consoleSize);
      let exit: Followed;
      try {
        exit = await followTo(client, p.sid, p.cid, reply.execId!, g);
      } finally {
        detach();
        process.off('SIGINT', stop);
      }
      finish(g, exit);
    }));

  ids(container.command('ps').description('list the processes of a container'))
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .argument('[ps-args...]', 'arguments for ps (after --)')
    .action(withClient(async (client, _g, sid: string, cid: string, psArgs: string[], o: { format: string }) => {
      const body: Bus.ContainerPsRequest = { format: o.format };
      if (psArgs.length) body.args = psArgs;
      const reply = await client.call('ContainerPs', both(sid, cid), body);
      process.stdout.write(reply.output?.endsWith('\n') ? reply.output : `${reply.output ?? ''}\n`);
    }));

  ids(container.command('wait').description('wait for a container (or an exec) to exit; exits with its status'))
    .option('--exec-id <id>', 'an exec instead of the init process')
    .option('--timeout-ms <ms>', 'give up after this long (0: no limit)', whole('a whole number of milliseconds', 0, 2 ** 32 - 1))
    .action(withClient(async (client, g, sid: string, cid: string, o: { execId?: string; timeoutMs?: number }) => {
      const body: Bus.ContainerWaitRequest = {};
      if (o.execId) body.execId = o.execId;
      if (o.timeoutMs) body.timeoutMs = o.timeoutMs;
      const reply = await client.call('ContainerWait', both(sid, cid), body, { timeoutMs: o.timeoutMs ? Math.max(g.timeout, o.timeoutMs + 5_000) : 2 ** 31 - 1 });
      const why = reply.reason ? ` (${reply.reason}${reply.message ? `: ${reply.message}` : ''})` : '';
      print(g, reply, () => `exit status ${reply.exitStatusUnknown ? 'unknown' : reply.exitStatus}${why} at ${reply.exitedAt}`);
      process.exitCode = reply.exitStatus ?? 0;
    }));

  ids(container.command('resize').description('resize the terminal of a container (or an exec) started with -t'))
    .argument('<rows>', 'rows', whole('a whole number of rows', 1, 65_535))
    .argument('<cols>', 'columns', whole('a whole number of columns', 1, 65_535))
    .option('--exec-id <id>', 'an exec instead of the init process')
    .action(withClient(async (client, g, sid: string, cid: string, rows: number, cols: number, o: { execId?: string }) => {
      const body: Bus.ContainerResizeRequest = { rows, cols };
      if (o.execId) body.execId = o.execId;
      await client.call('ContainerResize', both(sid, cid), body);
      print(g, { rows, cols }, () => `terminal of ${o.execId ?? cid} resized to ${rows}x${cols}`);
    }));

  ids(container.command('logs').description('print what a container (or an exec) wrote: stdout to stdout, stderr to stderr'))
    .option('--exec-id <id>', 'an exec instead of the init process')
    .option('--tail <bytes>', 'only the last bytes of each stream', whole('a whole number of bytes', 1))
    .option('-f, --follow', 'keep printing until the process exits')
    .action(withClient(async (client, g, sid: string, cid: string, o: { execId?: string; tail?: number; follow?: boolean }) => {
      const p = both(sid, cid);
      if (o.follow) {
        await followTo(client, p.sid, p.cid, o.execId, g);
        return;
      }
      const body: Bus.ContainerLogsRequest = {};
      if (o.execId) body.execId = o.execId;
      if (o.tail) body.tailBytes = o.tail;
      const reply = await client.call('ContainerLogs', p, body);
      if (g.json) print(g, { stdout: reply.stdout, stderr: reply.stderr, truncated: reply.truncated }, () => '');
      else {
        process.stdout.write(reply.stdout ?? '');
        process.stderr.write(reply.stderr ?? '');
      }
    }));

  ids(container.command('stats').description('CPU, memory and pids of a container'))
    .action(withClient(async (client, g, sid: string, cid: string) => {
      const reply = await client.call('ContainerStats', both(sid, cid));
      print(g, reply.stats ?? {}, () => statsTable(reply.stats ?? {}));
    }));
}

/** Follows a process, its output to ours (as JSON lines with --json). */
function followTo(client: VcClient, sid: string, cid: string, execId: string | undefined, g: Global): Promise<Followed> {
  const line = (stream: string) => (data: string) => process.stdout.write(`${JSON.stringify({ stream, data })}\n`);
  return follow(client, sid, cid, execId, g.json
    ? { stdout: line('stdout'), stderr: line('stderr') }
    : { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) });
}

/** Exits as the followed process did (255 when its status is unknown), saying why when known. */
function finish(g: Global, exit: Followed): void {
  if (g.json) print(g, exit, () => '');
  else if (exit.reason) process.stderr.write(`virtactors: exited ${exit.exitStatus}: ${exit.reason}${exit.message ? ` (${exit.message})` : ''}\n`);
  else if (exit.exitStatusUnknown) process.stderr.write('virtactors: the process exited; its status is unknown\n');
  process.exitCode = exit.exitStatusUnknown ? 255 : exit.exitStatus;
}

// ---- run ---------------------------------------------------------------------------

function runCommand(program: Command): void {
  sandboxOptions(containerOptions(program.command('run').description('create and start a container (in a new sandbox unless --sandbox), stream its output, exit with its status'), true))
    .argument('[command...]', 'the command and its arguments (after -- when it has flags)')
    .option('--name <cid>', 'container id (default: generated); a new sandbox gets the same id', idArg('container'))
    .option('--sandbox <sid>', 'run in this existing sandbox', idArg('sandbox'))
    .option('-d, --detach', 'start it and return (prints its id)')
    .option('-i, --interactive', 'forward our stdin to it (its stdin closes at our end of input)')
    .option('--rm', 'delete the container (and the sandbox run created) once it exited')
    .hook('preAction', (_p, c) => void containerSpec('run', c.processedArgs[0] as string[], c.opts()))
    .action(withClient(async (client, g, command: string[], o: ContainerFlags & SandboxFlags & { name?: string; sandbox?: string; host?: string; detach?: boolean; rm?: boolean; interactive?: boolean }) => {
      if (o.detach && o.rm) throw new UsageError('--rm and -d exclude each other: a detached container is deleted with `virtactors container delete`');
      const cid = id('container', o.name ?? `run-${randomBytes(4).toString('hex')}`);
      const container = containerSpec(cid, command, o);
      const sid = o.sandbox ? id('sandbox', o.sandbox) : cid;
      if (!o.sandbox) await createOn(client, o.host, { sandbox: sandboxSpec(sid, o), start: true });
      const cleanup = async () => {
        if (!o.rm) return;
        if (o.sandbox) await client.call('ContainerDelete', { sid, cid }, { force: true });
        else await client.call('SandboxDelete', { sid }, { force: true });
      };
      try {
        await client.call('ContainerCreate', { sid }, { container });
        const started = await client.call('ContainerStart', { sid, cid });
        if (o.detach) {
          print(g, { sandbox: sid, container: started.container }, () => cid, () => [cid]);
          return;
        }
        // Signals go to the container, as `docker run` proxies them.
        const proxy = (name: NodeJS.Signals) => void client.call('ContainerKill', { sid, cid }, { signal: signalNumber(name) }).catch(() => {});
        process.on('SIGINT', proxy);
        process.on('SIGTERM', proxy);
        const detach = attach(client, sid, cid, undefined, o, container.consoleSize);
        let exit: Followed;
        try {
          exit = await followTo(client, sid, cid, undefined, g);
        } finally {
          detach();
          process.off('SIGINT', proxy);
          process.off('SIGTERM', proxy);
        }
        await cleanup();
        finish(g, exit);
      } catch (err) {
        await cleanup().catch(() => {});
        throw err;
      }
    }));
}

// ---- events, inspection, hosts, ui, statecharts ----------------------------------------

function observeCommands(program: Command): void {
  program.command('events').description('replay lifecycle events (and follow them with --follow)')
    .option('--sandbox <sid>', "only this sandbox's (its latest incarnation)", idArg('sandbox'))
    .option('--follow', 'keep printing new events until Ctrl-C')
    .option('--since <n>', "from the sandbox's event seq N (or the stream seq without --sandbox)", whole('a whole number (an event seq)'))
    .action(withClient(async (client, g, o: { sandbox?: string; follow?: boolean; since?: number }) => {
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      const sandboxId = o.sandbox === undefined ? undefined : id('sandbox', o.sandbox);
      const events = client.events({ sandboxId, since: o.since, follow: !!o.follow, signal: stop.signal, latestIncarnation: true });
      for await (const e of events) {
        process.stdout.write(`${g.json ? JSON.stringify({ streamSeq: e.streamSeq, ...e.event }) : eventLine(e.event)}\n`);
      }
    }));

  program.command('inspect').description("follow live snapshots of a sandbox's actors (the host needs VC_INSPECT=1)").argument('<sid>', 'sandbox id', idArg('sandbox'))
    .action(withClient(async (client, g, sidArg: string) => {
      const sid = id('sandbox', sidArg);
      // Subscribed before asking, so no snapshot between the answer and the loop is lost.
      const sub = client.nc.subscribe(subjects.inspectSandbox(sid));
      try {
        const { sandbox } = await client.call('SandboxStatus', { sid });
        const host = sandbox?.host ?? '';
        const answers = await client.discover('INFO', Math.min(g.timeout, 2000), (a) => hostOf(a) === host);
        const publishes = publishesInspection(answers.find((a) => hostOf(a) === host));
        if (publishes === false) throw new CommandError('FailedPrecondition', `host ${host} does not publish inspection: start it with VC_INSPECT=1`);
        process.stderr.write(publishes
          ? `following the actors of sandbox ${sid} on host ${host} (Ctrl-C stops)\n`
          : `host ${host} did not say whether it publishes inspection (VC_INSPECT=1); following anyway\n`);
      } catch (err) {
        sub.unsubscribe();
        throw err;
      }
      process.once('SIGINT', () => sub.unsubscribe());
      for await (const m of sub) {
        const i = decodeTrusted<Bus.Inspection>(m.data);
        process.stdout.write(g.json ? `${JSON.stringify(i)}\n` : `${i.time} ${i.path || i.actorId} ${i.event} -> ${i.state} (${i.status})\n`);
      }
    }));

  program.command('hosts').description('runtime hosts answering service discovery')
    .action(withClient(async (client, g) => {
      const found = await client.discover('INFO', Math.min(g.timeout, 1000));
      const inspects = (f: Record<string, unknown>) => ({ true: 'yes', false: 'no', undefined: '?' })[String(publishesInspection(f)) as 'true' | 'false' | 'undefined'];
      const meta = (f: Record<string, unknown>) => (f.metadata ?? {}) as Record<string, string>;
      // The warm pool of VMs, where the host keeps one: ready/size (booting).
      const pool = (f: Record<string, unknown>) => {
        const m = meta(f);
        return m['vm.pool.size'] ? `${m['vm.pool.ready']}/${m['vm.pool.size']} ready${m['vm.pool.booting'] !== '0' ? `, ${m['vm.pool.booting']} booting` : ''}` : '-';
      };
      print(g, found, () => table([
        ['HOST', 'VERSION', 'ENDPOINTS', 'INSPECT', 'VM POOL', 'ID'],
        ...found.map((f) => [hostOf(f), String(f.version), String((f.endpoints as unknown[]).length), inspects(f), pool(f), String(f.id)]),
      ]), () => found.map(hostOf));
    }));

  program.command('ui').description('serve a live page of hosts, sandboxes and statecharts on 127.0.0.1 until Ctrl-C')
    .option('--port <n>', 'port (0: any free port)', whole('a port number', 0, 65535))
    .action(async (o: { port?: number }, cmd: Command) => {
      const g = globals(cmd);
      const { client, server } = await connect(g);
      try {
        // Loaded only here: other commands do not pay for the page's server.
        const { DEFAULT_UI_PORT, startUiServer } = await import('../ui/server.js');
        const { pino } = await import('pino');
        const ui = await startUiServer({ client, port: o.port ?? DEFAULT_UI_PORT, log: pino({ name: 'virtactors-ui', level: process.env.LOG_LEVEL ?? 'warn' }) });
        print(g, { url: ui.url }, () => `virtactors ui: ${ui.url}  (bus ${server}; Ctrl-C stops)`);
        await new Promise<void>((done) => {
          process.once('SIGINT', done);
          process.once('SIGTERM', done);
        });
        await ui.close();
      } finally {
        await client.nc.close();
      }
    });

  program.command('statecharts').description("the machine definitions: toJSON() for Stately's visualiser, Mermaid stateDiagram-v2 or Graphviz DOT")
    .addOption(new Option('--format <format>', 'output format').choices(chartFormats).default('json'))
    .addOption(new Option('--machine <name>', 'only this machine (repeatable)').choices(machineNames).argParser((v: string, prev: string[] = []) => {
      if (!machineNames.includes(v as MachineName)) throw new UsageError(`unknown machine ${v}: use ${machineNames.join(', ')}`);
      return [...prev, v];
    }))
    .action((o: { format: ChartFormat; machine?: MachineName[] }) => {
      const text = exportCharts(o.format, o.machine ?? [...machineNames]);
      process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    });
}

// ---- credentials ---------------------------------------------------------------------

function credsCommands(program: Command): void {
  const creds = program.command('creds').description('credentials');
  creds.command('create').description('mint credentials of a role (operators only); writes NAME.creds, 0600').argument('<name>', 'whom they are for')
    .addOption(new Option('--role <role>', 'role').choices(ROLES).makeOptionMandatory())
    .option('--out <file>', 'where to write them (default NAME.creds)')
    .action(withClient(async (client, g, name: string, o: { role: Role; out?: string }) => {
      const out = resolve(o.out ?? `${name}.creds`);
      if (existsSync(out)) throw new UsageError(`${out} exists; not overwriting it`);
      writePrivateFile(out, await client.createCreds(o.role, name), true);
      print(g, { name, role: o.role, file: out }, () => `${o.role} credentials for ${name} written to ${out} (mode 0600)`, () => [out]);
    }));
  creds.command('init').description('a new authority for a deployment: keys, server include, host and operator credentials').argument('<dir>', 'directory')
    .option('--routes <host:port,...>', 'also write the cluster include with these routes')
    .action(async (dirArg: string, o: { routes?: string }, cmd: Command) => {
      const g = globals(cmd);
      const dir = resolve(dirArg);
      const { created } = await ensureAuthority(dir);
      const files = authFiles(dir);
      const written = [files.serverConfig, files.creds('host'), files.creds('operator')];
      if (o.routes) {
        writeClusterAuth(dir, o.routes.split(',').filter(Boolean));
        written.push(files.clusterConfig);
      }
      print(g, { dir, created, files: written }, () => `${created ? 'created' : 'kept the existing'} authority in ${dir}\n${written.map((f) => `  ${f}`).join('\n')}`, () => written);
    });
}

// ---- the program ---------------------------------------------------------------------

export function program(): Command {
  const p = new Command('virtactors')
    .description('a sandbox runtime of statechart actors on a NATS bus')
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--server <url>', 'NATS server (else $NATS_URL, .state/nats.url, nats://127.0.0.1:4222)')
    .option('--creds <file>', 'credentials (else $NATS_CREDS, .state/auth/creds/operator.creds)')
    .option('--json', 'print JSON')
    .option('-q, --quiet', 'print ids only')
    .option('--timeout <ms>', 'reply timeout in milliseconds', whole('a whole number of milliseconds', 1), 60_000)
    .addHelpText('after', '\nEvery command has --help. Containers run through `virtactors run` like `docker run`; see docs/for-container-users.md.');
  sandboxCommands(p);
  containerCommands(p);
  runCommand(p);
  observeCommands(p);
  credsCommands(p);
  // Each command's errors end with a pointer to its own help, never the whole usage.
  const configure = (c: Command, path: string) => {
    c.exitOverride()
      .configureOutput({ outputError: (s, write) => write(`virtactors: ${s.replace(/^error: /, '')}`) })
      .showHelpAfterError(`(virtactors ${path}${path ? ' ' : ''}--help shows the usage)`);
    for (const sub of c.commands) configure(sub, path ? `${path} ${sub.name()}` : sub.name());
  };
  configure(p, '');
  return p;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and --version end well; every other parse error is a usage error.
      return ['commander.helpDisplayed', 'commander.version'].includes(err.code) ? 0 : 2;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`virtactors: ${err.message}\n`);
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
