// The hyperstart agent driver (reference §5). Unlike the 2018 runtime, which went through
// cc-proxy, it speaks hyperstart framing itself. The guest agent listens on two unix
// sockets under the sandbox's run directory (ctl and tty, as a VM's two serial ports
// would be exposed on the host) and the driver connects to both.
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Code, API_VERSION } from '../../protos/hyperstart/codes.js';
import { decodeJson, decodeUint32, encodeJson, FrameError, type CtlFrame } from '../../protos/hyperstart/frame.js';
import type * as H from '../../protos/hyperstart/types.js';
import {
  alreadyExists,
  deadlineExceeded,
  failedPrecondition,
  invalidArgument,
  notFound,
  toVcError,
  unavailable,
  VcError,
  ErrorCode,
} from '../../bus/errors.js';
import type { ContainerSpec, SandboxSpec } from '../../machines/specs.js';
import {
  Capability,
  defaultPsArgs,
  type Agent,
  type AgentInit,
  type AgentListener,
  type ExecResult,
  type ExitInfo,
  type GuestEndpoint,
  type GuestPlan,
  type ProcessListOptions,
  type ProcessSpec,
} from './agent.js';
import { socketName, type AgentConfigs } from './agent-type.js';
import { guestEntry, guestEnv } from '../guest-binaries.js';
import { registerAgent } from './index.js';
import { stopWithGrace, waitAtMost } from './calls.js';
import { CtlChannel, dial, GuestError, TtyChannel } from './hyperstart-ctl.js';
import { ProcessTable, UNKNOWN_EXIT, type ProcRecord } from './hyperstart-procs.js';

type Config = AgentConfigs['hyperstart'];

const SIGKILL = 9;
const SIGTERM = 15;
/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

export interface HyperstartOptions {
  /** How long stopContainer waits after SIGTERM before SIGKILL. */
  stopGraceMs?: number;
}

interface ContainerRecord {
  spec: ContainerSpec;
  started: boolean;
}

interface Connection {
  ctl: CtlChannel;
  tty: TtyChannel;
}

export class HyperstartAgent implements Agent {
  readonly type = 'hyperstart' as const;
  private config!: Config;
  private sandbox!: SandboxSpec;
  private runDir = '';
  private listener?: AgentListener;
  private ctlPath = '';
  private ttyPath = '';
  private conn?: Connection;
  private connecting?: Promise<Connection>;
  private readonly containers = new Map<string, ContainerRecord>();
  private readonly procs: ProcessTable;
  /** Whether the connected guest has the virtactors extension codes (undefined: not asked yet). */
  private extensions: boolean | undefined;
  /** Output of processes the driver runs for itself (ps on a stock guest), not the user's. */
  private readonly captured = new Map<string, { stdout: Uint8Array[]; stderr: Uint8Array[] }>();
  private readonly stopGraceMs: number;

  constructor(options: HyperstartOptions = {}) {
    this.stopGraceMs = options.stopGraceMs ?? 2_000;
    this.procs = new ProcessTable({
      output: (cid, execId, stream, data) => {
        const captured = this.captured.get(`${cid}\0${execId}`);
        if (captured) captured[stream].push(data);
        else this.listener?.output?.(cid, execId, stream, data);
      },
      exited: (cid, execId, exit) => {
        if (!this.captured.has(`${cid}\0${execId}`)) this.listener?.processExited(cid, execId, exit);
      },
    });
  }

  async init(init: AgentInit): Promise<void> {
    this.config = init.config as Config;
    this.sandbox = init.sandbox;
    this.runDir = init.runDir;
    this.listener = init.listener;
    // Names inside the run directory (agent-type.ts refuses paths): nothing else is bound, dialled or removed.
    this.ctlPath = join(init.runDir, socketName('sockCtlName', this.config.sockCtlName) || 'hyper.sock');
    this.ttyPath = join(init.runDir, socketName('sockTtyName', this.config.sockTtyName) || 'tty.sock');
    if (this.ctlPath === this.ttyPath) throw invalidArgument(`sockCtlName and sockTtyName both name ${this.ctlPath}`);
  }

  /** Both agents in 2018 set only the block-device bit (reference §2.5). */
  capabilities(): number {
    return Capability.blockDeviceSupport;
  }

  private get shareDir(): string {
    return join(this.runDir, 'shared');
  }

  async createSandbox(): Promise<GuestPlan> {
    for (const path of [this.ctlPath, this.ttyPath]) {
      if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
        throw invalidArgument(`hyperstart socket path ${path} is longer than ${MAX_SOCKET_PATH} bytes; use a shorter run directory (VC_RUN_DIR) or socket names`);
      }
    }
    await mkdir(this.shareDir, { recursive: true });
    return {
      endpoint: { ctlSocket: this.ctlPath, ttySocket: this.ttyPath },
      command: [process.execPath, guestEntry('hyperstart'), '--ctl', this.ctlPath, '--tty', this.ttyPath, '--state-parent', this.runDir],
      env: guestEnv(),
    };
  }

  // ---- connection ---------------------------------------------------------------------

  /** Dials both sockets, waits for READY, then checks the API version. */
  connect(): Promise<void> {
    return this.connection().then(() => undefined);
  }

  private connection(): Promise<Connection> {
    if (this.conn) return Promise.resolve(this.conn);
    this.connecting ??= this.open().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async open(): Promise<Connection> {
    if (!this.ctlPath) throw failedPrecondition('hyperstart agent used before init');
    const what = `hyperstart guest at ${this.ctlPath}`;
    const deadline = performance.now() + this.config.readyTimeoutMs;
    const ctlSocket = await dial(this.ctlPath, deadline).catch((err: Error) => {
      throw unavailable(`cannot connect to ${what}: ${err.message}`);
    });
    let tty: TtyChannel | undefined;
    const ctl = new CtlChannel(ctlSocket, {
      event: (frame) => this.onEvent(frame),
      lost: (reason) => this.lost(ctl, reason),
    });
    try {
      // The guest speaks first; nothing is written before its READY.
      const noReady = () => deadlineExceeded(`${what} sent no READY within ${this.config.readyTimeoutMs} ms`);
      await ctl.ready(deadline - performance.now(), what, noReady);
      const ttySocket = await dial(this.ttyPath, deadline).catch((err: Error) => {
        throw unavailable(`cannot connect to the hyperstart tty socket ${this.ttyPath}: ${err.message}`);
      });
      tty = new TtyChannel(ttySocket, {
        data: (seq, payload) => this.onStream(seq, payload),
        lost: (reason) => this.lost(ctl, reason),
      });
      const reply = await ctl.call(Code.VERSION, undefined, this.config.callTimeoutMs);
      const version = decodeUint32(reply);
      if (version !== API_VERSION) {
        throw failedPrecondition(`${what} speaks hyperstart API version ${version}; this runtime speaks version ${API_VERSION} only`);
      }
    } catch (err) {
      ctl.close();
      tty?.close();
      throw err instanceof FrameError ? unavailable(`${what} answered VERSION badly: ${err.message}`) : toVcError(err);
    }
    this.conn = { ctl, tty };
    return this.conn;
  }

  private lost(ctl: CtlChannel, reason: string): void {
    if (this.conn?.ctl !== ctl) return;
    this.dropConnection();
    this.listener?.connectionLost?.(`hyperstart guest connection lost: ${reason}`);
  }

  private dropConnection(): void {
    const conn = this.conn;
    this.conn = undefined;
    this.extensions = undefined;
    conn?.ctl.close();
    conn?.tty.close();
    this.procs.abandonWaits();
  }

  async disconnect(): Promise<void> {
    this.dropConnection();
  }

  private onEvent(frame: CtlFrame): void {
    if (frame.code !== Code.PROCESSASYNCEVENT) return;
    let event: H.ProcessAsyncEvent;
    try {
      event = decodeJson<H.ProcessAsyncEvent>(frame.payload);
    } catch {
      return;
    }
    if (event.event !== 'finished' || typeof event.container !== 'string' || typeof event.status !== 'number') return;
    this.procs.finished(event.container, event.process || event.container, event.status);
  }

  private onStream(seq: number, payload: Uint8Array): void {
    // Data for a stream nobody owns is answered with its EOF, like hyperstart's "goodbye".
    if (!this.procs.data(seq, payload) && payload.byteLength > 0) this.conn?.tty.eof(seq);
  }

  /** One ctl command with the call deadline; ERROR becomes a VcError. */
  private async send(code: number, body: unknown, abort: AbortSignal | undefined, timeoutMs = this.config.callTimeoutMs): Promise<Uint8Array> {
    const { ctl } = await this.connection();
    try {
      return await ctl.call(code, body === undefined ? undefined : encodeJson(body), timeoutMs, abort);
    } catch (err) {
      if (err instanceof GuestError) throw fromGuest(err);
      if (err instanceof FrameError) throw invalidArgument(`hyperstart command does not fit a frame: ${err.message}`);
      throw toVcError(err);
    }
  }

  // ---- sandbox --------------------------------------------------------------------------

  /** PING; the caller bounds it (its abort carries the monitor's deadline). */
  async check(abort?: AbortSignal): Promise<void> {
    const conn = this.conn;
    if (!conn) throw unavailable('hyperstart guest is not connected');
    await conn.ctl.call(Code.PING, undefined, this.config.callTimeoutMs, abort).catch((err) => {
      throw toVcError(err);
    });
  }

  async startSandbox(endpoint: GuestEndpoint, abort?: AbortSignal): Promise<void> {
    const moved = (endpoint.ctlSocket && endpoint.ctlSocket !== this.ctlPath) || (endpoint.ttySocket && endpoint.ttySocket !== this.ttyPath);
    if (moved) {
      this.dropConnection();
      this.ctlPath = endpoint.ctlSocket || this.ctlPath;
      this.ttyPath = endpoint.ttySocket || this.ttyPath;
    }
    const pod: H.Pod = { hostname: this.sandbox.hostname, containers: [], interfaces: [], routes: [], dns: [], shareDir: this.shareDir };
    await this.send(Code.STARTPOD, pod, abort);
  }

  /** DESTROYPOD: the guest ends every container, answers, and exits. */
  async stopSandbox(abort?: AbortSignal): Promise<void> {
    const conn = await this.connection();
    conn.ctl.expectClose();
    conn.tty.expectClose();
    await this.send(Code.DESTROYPOD, undefined, abort);
    // Exits reported before the ACK may still wait for their streams' EOF on the tty.
    await Promise.all(this.procs.finishing().map((r) => this.procs.wait(r)));
    // Specs stay for a restart of the sandbox; nothing runs any more.
    for (const c of this.containers.values()) c.started = false;
    this.procs.clear();
    this.dropConnection();
  }

  /** The guest shares the host's CPUs and memory; it acknowledges and has nothing to online. */
  async onlineCPUMem(_cpus: number, abort?: AbortSignal): Promise<void> {
    await this.send(Code.ONLINECPUMEM, undefined, abort);
  }

  // ---- containers -----------------------------------------------------------------------

  /** Records the spec: as in the reference, the guest creates the container when it starts. */
  async createContainer(spec: ContainerSpec, abort?: AbortSignal): Promise<void> {
    await this.clearExited(spec.id, abort);
    this.containers.set(spec.id, { spec, started: false });
  }

  /**
   * A container whose init exited on its own stays in the guest until REMOVECONTAINER;
   * starting or creating it again removes that leftover first. A running one is refused.
   */
  private async clearExited(cid: string, abort: AbortSignal | undefined): Promise<void> {
    const c = this.containers.get(cid);
    if (!c?.started) return;
    if (!this.procs.get(cid, cid)?.exit) throw alreadyExists(`container ${cid} is already running in the hyperstart guest`);
    await this.removeFromGuest(cid, abort);
  }

  private async removeFromGuest(cid: string, abort: AbortSignal | undefined): Promise<void> {
    const remove: H.RemoveCommand = { container: cid };
    await this.send(Code.REMOVECONTAINER, remove, abort);
    for (const rec of this.procs.ofContainer(cid)) this.procs.drop(rec);
    const c = this.containers.get(cid);
    if (c) c.started = false;
  }

  private container(cid: string): ContainerRecord {
    const c = this.containers.get(cid);
    if (!c) throw notFound(`container ${cid} is unknown to the hyperstart agent`);
    return c;
  }

  private running(cid: string): ContainerRecord {
    const c = this.container(cid);
    if (!c.started) throw failedPrecondition(`container ${cid} has not been started in the hyperstart guest`);
    return c;
  }

  async startContainer(containerId: string, abort?: AbortSignal): Promise<{ pid: number }> {
    const c = this.container(containerId);
    await this.clearExited(containerId, abort);
    const { spec } = c;
    const rec = this.procs.add(containerId, containerId, spec.terminal);
    const body: H.Container = {
      id: containerId,
      image: containerId,
      rootfs: spec.rootfs,
      process: toProcess(containerId, spec, rec),
      ...(spec.privileged ? { privileged: true } : {}),
    };
    try {
      rec.pid = startedPid(await this.send(Code.NEWCONTAINER, body, abort));
    } catch (err) {
      this.procs.drop(rec);
      throw err;
    }
    c.started = true;
    return { pid: rec.pid };
  }

  async exec(containerId: string, spec: ProcessSpec, execId: string, abort?: AbortSignal): Promise<ExecResult> {
    this.running(containerId);
    const known = this.procs.get(containerId, execId);
    if (known && !known.exit) throw alreadyExists(`process ${execId} already runs in container ${containerId}`);
    if (known) this.procs.drop(known);
    const rec = this.procs.add(containerId, execId, spec.terminal);
    const body: H.ExecCommand = { container: containerId, process: toProcess(execId, spec, rec) };
    try {
      rec.pid = startedPid(await this.send(Code.EXECCMD, body, abort));
    } catch (err) {
      this.procs.drop(rec);
      throw err;
    }
    return { execId, pid: rec.pid };
  }

  /**
   * KILLCONTAINER with the 2018 runtime's allProcesses field: upstream signals the init pid
   * only, our guest honours `all` by signalling every member of the container (its cgroup,
   * or the processes and their descendants), which per-process SIGNALPROCESS would not
   * reach (orphans, a process's children) or would reach twice.
   */
  async killContainer(containerId: string, signal: number, all: boolean, abort?: AbortSignal): Promise<void> {
    this.running(containerId);
    if (!all) {
      await this.send(Code.KILLCONTAINER, { container: containerId, signal } satisfies H.KillCommand, abort);
      return;
    }
    if (await this.hasExtensions(containerId, abort)) {
      await this.send(Code.KILLCONTAINER, { container: containerId, signal, allProcesses: true } satisfies H.KillCommand, abort);
      return;
    }
    // A stock hyperstart signals the init process only: SIGNALPROCESS every other
    // process the runtime started in the container, then init (whose exit ends the rest).
    for (const rec of this.procs.live(containerId)) {
      if (rec.execId !== containerId) await this.signal(containerId, rec.execId, signal, abort).catch(ignoreGone);
    }
    await this.send(Code.KILLCONTAINER, { container: containerId, signal } satisfies H.KillCommand, abort);
  }

  /**
   * Whether the guest is ours (with the virtactors extension codes) or a stock
   * hyperstart; asked once per connection, with a harmless ps of the container.
   */
  private async hasExtensions(containerId: string, abort: AbortSignal | undefined): Promise<boolean> {
    if (this.extensions === undefined) {
      try {
        await this.send(Code.PSCONTAINER, { container: containerId, format: 'json', psargs: [] } satisfies H.PsCommand, abort);
        this.extensions = true;
      } catch (err) {
        if (!isUnknownCommand(err)) throw err;
        this.extensions = false;
      }
    }
    return this.extensions;
  }

  private async signal(containerId: string, execId: string, signal: number, abort: AbortSignal | undefined): Promise<void> {
    const cmd: H.SignalCommand = { container: containerId, process: execId, signal };
    await this.send(Code.SIGNALPROCESS, cmd, abort);
  }

  async signalProcess(containerId: string, execId: string, signal: number, all: boolean, abort?: AbortSignal): Promise<void> {
    if (!execId || execId === containerId) return this.killContainer(containerId, signal, all, abort);
    this.running(containerId);
    if (!this.procs.get(containerId, execId)) throw notFound(`process ${execId} does not exist in container ${containerId}`);
    await this.signal(containerId, execId, signal, abort);
  }

  /** SIGTERM to init, SIGKILL to everything after the grace period, then REMOVECONTAINER. */
  async stopContainer(containerId: string, abort?: AbortSignal): Promise<ExitInfo | undefined> {
    // The spec is kept: a stopped container can be started again.
    const c = this.container(containerId);
    if (!c.started) return undefined;
    const init = this.procs.get(containerId, containerId);
    let exit = init?.exit;
    if (init && !exit) {
      exit = await stopWithGrace({
        what: `container ${containerId}`,
        terminate: () => this.killContainer(containerId, SIGTERM, false, abort).catch(ignoreGone),
        kill: () => this.killContainer(containerId, SIGKILL, true, abort).catch(ignoreGone),
        exited: this.procs.wait(init),
        graceMs: this.stopGraceMs,
        killWaitMs: this.config.callTimeoutMs,
        signal: abort,
      });
    }
    // Execs still running are killed now, so that their exits are reported before removal.
    const left = this.procs.live(containerId);
    if (left.length > 0) {
      await this.killContainer(containerId, SIGKILL, true, abort);
      await waitAtMost(Promise.all(left.map((r) => this.procs.wait(r))), this.config.callTimeoutMs, abort);
    }
    await this.removeFromGuest(containerId, abort);
    return exit;
  }

  async waitProcess(containerId: string, execId: string, abort?: AbortSignal): Promise<ExitInfo> {
    const rec = this.procs.get(containerId, execId || containerId);
    if (!rec) throw notFound(`process ${execId || containerId} does not exist in container ${containerId}`);
    if (!rec.exit && !this.conn) return { exitStatus: UNKNOWN_EXIT, exitedAt: new Date().toISOString() };
    return (await waitAtMost(this.procs.wait(rec), Infinity, abort, `waiting for ${execId || containerId}`))!;
  }

  /** WINSIZE for a process started with a terminal. */
  async winsizeProcess(containerId: string, execId: string, rows: number, columns: number, abort?: AbortSignal): Promise<void> {
    this.running(containerId);
    const msg: H.WindowSizeMessage = { container: containerId, process: execId || containerId, row: rows, column: columns };
    await this.send(Code.WINSIZE, msg, abort);
  }

  /** Stdin of a process (the stdio stream), and its close. */
  async writeProcessStdin(containerId: string, execId: string, data: Uint8Array): Promise<void> {
    const rec = this.procs.get(containerId, execId || containerId);
    if (!rec) throw notFound(`process ${execId || containerId} does not exist in container ${containerId}`);
    (await this.connection()).tty.write(rec.stdio, data);
  }

  async closeProcessStdin(containerId: string, execId: string): Promise<void> {
    const rec = this.procs.get(containerId, execId || containerId);
    if (!rec) throw notFound(`process ${execId || containerId} does not exist in container ${containerId}`);
    (await this.connection()).tty.eof(rec.stdio);
  }

  /** Our guest's extension codes; a stock hyperstart refuses them (no pause in upstream). */
  async pauseContainer(containerId: string, abort?: AbortSignal): Promise<void> {
    await this.extension(Code.PAUSECONTAINER, containerId, 'pause', abort);
  }

  async resumeContainer(containerId: string, abort?: AbortSignal): Promise<void> {
    await this.extension(Code.RESUMECONTAINER, containerId, 'resume', abort);
  }

  private async extension(code: number, containerId: string, verb: string, abort: AbortSignal | undefined): Promise<void> {
    this.running(containerId);
    const body: H.RemoveCommand = { container: containerId };
    await this.send(code, body, abort).catch((err) => {
      throw unsupported(err, verb);
    });
  }

  // ---- ps -----------------------------------------------------------------------------------

  /**
   * PSCONTAINER (our extension code): the guest lists the container's processes itself,
   * with the same supervisor the kata agent uses, so both agents answer alike. Running
   * ps as an exec in the container would see another pid namespace than the pids the
   * guest reports (its processes run in a reaping namespace) and needs ps in the rootfs.
   */
  async processListContainer(containerId: string, options: ProcessListOptions, abort?: AbortSignal): Promise<Uint8Array> {
    this.running(containerId);
    const cmd: H.PsCommand = { container: containerId, format: options.format, psargs: options.args.length ? options.args : defaultPsArgs };
    try {
      return await this.send(Code.PSCONTAINER, cmd, abort);
    } catch (err) {
      // A stock hyperstart has no ps command: run ps as an exec in the container instead.
      if (!isUnknownCommand(err)) throw err;
      this.extensions = false;
      return this.psByExec(containerId, options, abort);
    }
  }

  /**
   * ps as an exec in the container, as the 2018 runtime did through its shim. In a
   * hyperstart VM each container has a pid namespace of its own, so ps sees exactly the
   * container's processes; the ps process itself is left out of the answer.
   */
  private async psByExec(containerId: string, options: ProcessListOptions, abort: AbortSignal | undefined): Promise<Uint8Array> {
    const psargs = options.format === 'json' ? ['-o', 'pid=,args='] : options.args.length ? options.args : defaultPsArgs;
    const execId = `vc-ps-${randomBytes(4).toString('hex')}`;
    const key = `${containerId}\0${execId}`;
    const out = { stdout: [] as Uint8Array[], stderr: [] as Uint8Array[] };
    this.captured.set(key, out);
    const rec = this.procs.add(containerId, execId, false);
    try {
      const spec = { args: ['ps', ...psargs], env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], cwd: '', user: '', terminal: false };
      await this.send(Code.EXECCMD, { container: containerId, process: toProcess(execId, spec, rec) } satisfies H.ExecCommand, abort);
      const exit = (await waitAtMost(this.procs.wait(rec), Infinity, abort, `ps in container ${containerId}`))!;
      const text = Buffer.concat(out.stdout).toString('utf8');
      if (exit.exitStatus !== 0) {
        throw failedPrecondition(`ps in container ${containerId} exited with ${exit.exitStatus}: ${Buffer.concat(out.stderr).toString('utf8').trim()}`);
      }
      const self = `ps ${psargs.join(' ')}`;
      const lines = text.split('\n').filter((l) => l.trim() !== '' && !l.trimEnd().endsWith(self));
      if (options.format === 'table') return Buffer.from(`${lines.join('\n')}\n`);
      const pids = lines.map((l) => Number.parseInt(l.trim(), 10)).filter((n) => Number.isInteger(n));
      return Buffer.from(JSON.stringify(pids));
    } finally {
      this.captured.delete(key);
      this.procs.drop(rec);
    }
  }
}

/** A stock hyperstart refuses our extension codes: say so instead of a bare refusal. */
const isUnknownCommand = (err: unknown): err is VcError => err instanceof VcError && /unknown command|unsupported/i.test(err.message);

function unsupported(err: unknown, verb: string): unknown {
  if (isUnknownCommand(err)) {
    return failedPrecondition(`this hyperstart guest cannot ${verb} containers (upstream hyperstart has no such command): ${err.message}`);
  }
  return err;
}

function toProcess(id: string, spec: Pick<ProcessSpec, 'args' | 'env' | 'cwd' | 'user' | 'terminal'>, rec: ProcRecord): H.Process {
  const envs = spec.env.map((kv) => {
    const eq = kv.indexOf('=');
    return eq < 0 ? { env: kv, value: '' } : { env: kv.slice(0, eq), value: kv.slice(eq + 1) };
  });
  const p: H.Process = { id, args: spec.args, envs, terminal: spec.terminal, stdio: rec.stdio, stderr: rec.stderr };
  if (spec.cwd) p.workdir = spec.cwd;
  if (spec.user) p.user = spec.user;
  return p;
}

/** The pid our guest puts in the ACK of NEWCONTAINER/EXECCMD (0 from a stock hyperstart). */
function startedPid(reply: Uint8Array): number {
  if (reply.byteLength === 0) return 0;
  try {
    const { pid } = decodeJson<H.StartedReply>(reply);
    return Number.isInteger(pid) ? pid : 0;
  } catch {
    return 0;
  }
}

const codes: Record<string, (message: string) => VcError> = {
  NotFound: notFound,
  AlreadyExists: alreadyExists,
  FailedPrecondition: failedPrecondition,
  InvalidArgument: invalidArgument,
  DeadlineExceeded: deadlineExceeded,
  Unavailable: unavailable,
  Internal: (message) => new VcError(ErrorCode.Internal, message),
};

/**
 * The guest's ERROR as a VcError. Our guest leads its text with a code ("NotFound: ...");
 * upstream texts ("no such container", "invalid signal") are classified by what they say.
 */
function fromGuest(err: GuestError): VcError {
  const m = /^([A-Za-z]+): ([\s\S]*)$/.exec(err.detail);
  const make = m ? codes[m[1]!] : undefined;
  if (make) return make(`hyperstart guest refused ${err.command}: ${m![2]}`);
  const text = err.detail;
  if (/no such (container|process)|not found/i.test(text)) return notFound(err.message);
  if (/already exists/i.test(text)) return alreadyExists(err.message);
  if (/invalid/i.test(text)) return invalidArgument(err.message);
  return failedPrecondition(err.message);
}

function ignoreGone(err: unknown): void {
  if (err instanceof VcError && err.code === 'NotFound') return;
  throw err;
}

registerAgent('hyperstart', () => new HyperstartAgent());
