// The hyperstart agent driver (reference §5). Unlike the 2018 runtime, which went through
// cc-proxy, it speaks hyperstart framing itself. The guest agent listens on two unix
// sockets under the sandbox's run directory (ctl and tty, as a VM's two serial ports
// would be exposed on the host) and the driver connects to both.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
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
  unimplemented,
  notFound,
  toVcError,
  unavailable,
  VcError,
  ErrorCode,
  saysExhausted,
} from '../../bus/errors.js';
import type { ContainerSpec, SandboxSpec } from '../../machines/specs.js';
import {
  Capability,
  defaultPsArgs,
  type Agent,
  type AgentInit,
  type AgentListener,
  type AdoptedGuest,
  type ExecResult,
  type ExitInfo,
  type GuestEndpoint,
  type GuestPlan,
  type ProcessListOptions,
  type ProcessSpec,
  type StartResult,
  unknownExit,
} from './agent.js';
import { socketName, type AgentConfigs } from './agent-type.js';
import { guestEntry, guestEnv } from '../guest-binaries.js';
import { registerAgent } from './index.js';
import { stopWithGrace, waitAtMost } from './calls.js';
import { CtlChannel, dial, GuestError, TtyChannel } from './hyperstart-ctl.js';
import { ProcessTable, type ProcRecord } from './hyperstart-procs.js';
import { loadStreams, saveStreams, type SavedStreams } from './hyperstart-streams.js';
import { psExecArgs, psExecResult } from './hyperstart-ps.js';
import { ROOTFS_DIR, stageRootfs, unstageRootfs, type GuestShare } from '../shared-dir.js';

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
  /**
   * Prepared in the guest at create (PREPARECONTAINER): its init waits there and its rootfs
   * is staged, so the start only opens the gate. Set on adopt for a container not started
   * (a reattaching driver cannot ask), and used only where the guest serves the code.
   */
  prepared: boolean;
}

interface Connection {
  ctl: CtlChannel;
  tty: TtyChannel;
  /**
   * The guest serves virtactors' extension codes (ours); false for a stock hyperstart,
   * which answers the EXTENSIONS probe with ERROR. Asked once per connection.
   */
  extensions: boolean;
  /** The guest prepares containers at create (PREPARECONTAINER is among the codes it serves). */
  prepares: boolean;
}

export class HyperstartAgent implements Agent {
  readonly type = 'hyperstart' as const;
  private config!: Config;
  private sandbox!: SandboxSpec;
  private runDir = '';
  private listener?: AgentListener;
  private log?: Logger;
  private ctlPath = '';
  private ttyPath = '';
  private conn?: Connection;
  private connecting?: Promise<Connection>;
  private readonly containers = new Map<string, ContainerRecord>();
  private readonly procs: ProcessTable;
  /** Output of processes the driver runs for itself (ps on a stock guest), not the user's. */
  private readonly captured = new Map<string, { stdout: Uint8Array[]; stderr: Uint8Array[] }>();
  private readonly stopGraceMs: number;
  /** Where container rootfs are staged: the backend's 9p export, or our own directory. */
  private share: GuestShare | undefined;

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
    }, (streams) => this.saveStreams(streams));
  }

  async init(init: AgentInit): Promise<void> {
    this.config = init.config as Config;
    this.sandbox = init.sandbox;
    this.runDir = init.runDir;
    this.listener = init.listener;
    this.log = init.log;
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
      // A guest on the host's filesystem finds the shared directory where the host has it,
      // and keeps its own state (container bundles) in the run directory.
      command: [process.execPath, guestEntry('hyperstart'), '--ctl', this.ctlPath, '--tty', this.ttyPath, '--shared-root', this.shareDir, '--state-parent', this.runDir],
      env: guestEnv(),
      shareTag: this.config.shareTag || 'hyperShared',
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
    let extensions = false;
    let prepares = false;
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
      const served = await ctl.call(Code.EXTENSIONS, undefined, this.config.callTimeoutMs).then(
        (reply) => servedCodes(reply),
        (err: unknown) => {
          // Any refusal: a stock hyperstart refuses every code it does not know, with no text.
          if (err instanceof GuestError) return undefined;
          throw err;
        },
      );
      extensions = served !== undefined;
      // An older guest of ours serves the other extensions but not this one.
      prepares = !!served?.includes(Code.PREPARECONTAINER);
    } catch (err) {
      ctl.close();
      tty?.close();
      throw err instanceof FrameError ? unavailable(`${what} answered VERSION badly: ${err.message}`) : toVcError(err);
    }
    this.conn = { ctl, tty, extensions, prepares };
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
    const execId = event.process || event.container;
    this.procs.finished(event.container, execId, event.status, this.mayBeSignalDeath(event.container, execId, event.status));
  }

  /**
   * A stock hyperstart reports a death by a signal as 0 (reference §10), so a 0 from it
   * is unknown when the process may have died of a signal: one the runtime sent it, or,
   * for an exec, one the runtime sent its init (the execs die with their container). A
   * signal from inside the container (kill -9 $$) cannot be told from exit 0.
   */
  private mayBeSignalDeath(containerId: string, execId: string, status: number): boolean {
    if (status !== 0 || this.conn?.extensions !== false) return false;
    const rec = this.procs.get(containerId, execId);
    return !!rec?.signalled || (execId !== containerId && !!this.procs.get(containerId, containerId)?.signalled);
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

  locate(endpoint: GuestEndpoint): void {
    const moved = (endpoint.ctlSocket && endpoint.ctlSocket !== this.ctlPath) || (endpoint.ttySocket && endpoint.ttySocket !== this.ttyPath);
    if (!moved) return;
    this.dropConnection();
    this.ctlPath = endpoint.ctlSocket || this.ctlPath;
    this.ttyPath = endpoint.ttySocket || this.ttyPath;
  }

  async startSandbox(endpoint: GuestEndpoint, abort?: AbortSignal): Promise<void> {
    // shareDir is a 9p tag in the guest: only a backend that exports the directory has one.
    this.share = endpoint.share ?? { hostDir: this.shareDir, bind: false };
    const pod: H.Pod = { hostname: this.sandbox.hostname, containers: [], interfaces: [], routes: [], dns: [] };
    if (endpoint.share?.tag) pod.shareDir = endpoint.share.tag;
    await this.send(Code.STARTPOD, pod, abort);
  }

  // ---- reattach -----------------------------------------------------------------------

  /** Kept for a driver that reattaches (hyperstart-streams.ts); a failed write only costs that. */
  private saveStreams(streams: SavedStreams[]): void {
    if (!this.runDir) return;
    try {
      saveStreams(this.runDir, streams);
    } catch (err) {
      this.log?.warn({ err, sandboxId: this.sandbox.id }, 'hyperstart: stream sequences not saved: output after a restart would be lost');
    }
  }

  adopt(guest: AdoptedGuest): void {
    this.share = guest.endpoint.share ?? { hostDir: this.shareDir, bind: false };
    const saved = new Map(loadStreams(this.runDir).map((s) => [`${s.containerId}\0${s.execId}`, s]));
    for (const c of guest.containers) {
      // A container created but not started was prepared by the earlier driver if its guest
      // prepares (its rootfs staged then): the start opens the gate, or creates it anew there.
      this.containers.set(c.spec.id, { spec: c.spec, started: c.started, prepared: !c.started });
      for (const execId of c.running) this.procs.adopt(c.spec.id, execId, saved.get(`${c.spec.id}\0${execId}`));
    }
  }

  /**
   * Connecting is enough: the guest sends the exits it kept while no host was attached
   * right after READY, each once, and the output its processes wrote meanwhile and write
   * from now on, on the streams the earlier driver saved.
   */
  async reconcile(): Promise<void> {
    await this.connect();
  }

  /** DESTROYPOD: the guest ends every container, answers, and exits. */
  async stopSandbox(abort?: AbortSignal): Promise<void> {
    const conn = await this.connection();
    conn.ctl.expectClose();
    conn.tty.expectClose();
    // The guest kills whatever still runs.
    for (const cid of this.containers.keys()) for (const rec of this.procs.live(cid)) this.markSignalled(rec, SIGKILL);
    await this.send(Code.DESTROYPOD, undefined, abort);
    // Exits reported before the ACK may still wait for their streams' EOF on the tty.
    await Promise.all(this.procs.finishing().map((r) => this.procs.wait(r)));
    // Specs stay for a restart of the sandbox; nothing runs any more.
    for (const [cid, c] of this.containers) {
      c.started = false;
      c.prepared = false;
      await this.unstage(cid);
    }
    this.procs.clear();
    this.dropConnection();
  }

  /** The guest shares the host's CPUs and memory; it acknowledges and has nothing to online. */
  async onlineCPUMem(_cpus: number, abort?: AbortSignal): Promise<void> {
    await this.send(Code.ONLINECPUMEM, undefined, abort);
  }

  // ---- containers -----------------------------------------------------------------------

  /**
   * Our guest prepares the container now (PREPARECONTAINER: bundle, OCI create, init held at
   * the gate), so that errors of the create come here and the start only opens the gate. A
   * stock hyperstart has only NEWCONTAINER: as in the reference, the spec is recorded and the
   * guest creates the container when it starts.
   */
  async createContainer(spec: ContainerSpec, abort?: AbortSignal): Promise<void> {
    // The hyperstart protocol carries no per-container limits: refused, never dropped.
    if (spec.resources) throw unimplemented(`the hyperstart protocol has no per-container resources; use the kata agent, or sandbox limits (io.virtactors.memory-limit)`);
    if (spec.hostname) throw unimplemented(`the hyperstart protocol has no per-container hostname; its containers share the pod's (the sandbox's --hostname)`);
    await this.clearExited(spec.id, abort);
    const { prepares } = await this.connection();
    if (!prepares) {
      this.containers.set(spec.id, { spec, started: false, prepared: false });
      return;
    }
    await this.stage(spec.id, spec);
    try {
      await this.send(Code.PREPARECONTAINER, containerBody(spec.id, spec, toProcess(spec.id, spec, undefined, true)), abort);
    } catch (err) {
      await this.unstage(spec.id).catch(() => {});
      throw err;
    }
    this.containers.set(spec.id, { spec, started: false, prepared: true });
  }

  /**
   * As virtcontainers: the rootfs is staged at <shared dir>/<cid>/rootfs and the guest
   * opens <shared root>/<image>/<rootfs>. Without a rootfs the guest uses its own root.
   */
  private async stage(cid: string, spec: ContainerSpec): Promise<void> {
    if (spec.rootfs) await stageRootfs(this.share ?? { hostDir: this.shareDir, bind: false }, cid, spec.rootfs);
  }

  /**
   * A container whose init exited on its own stays in the guest until REMOVECONTAINER;
   * starting or creating it again removes that leftover first. A running one is refused.
   */
  private async clearExited(cid: string, abort: AbortSignal | undefined): Promise<void> {
    const c = this.containers.get(cid);
    if (!c?.started) return;
    // No record of its init: adopted as stopped by a driver that restarted (removed or not).
    const init = this.procs.get(cid, cid);
    if (init && !init.exit) throw alreadyExists(`container ${cid} is already running in the hyperstart guest`);
    await this.removeFromGuest(cid, abort);
  }

  private async removeFromGuest(cid: string, abort: AbortSignal | undefined): Promise<void> {
    const remove: H.RemoveCommand = { container: cid };
    await this.send(Code.REMOVECONTAINER, remove, abort).catch((err: unknown) => {
      // A refused REMOVECONTAINER means there is nothing left to remove once the init's exit
      // is known (a stock hyperstart frees a container as soon as its init exits), or when
      // nothing of the init is known (adopted as stopped: removed already, or not).
      const init = this.procs.get(cid, cid);
      if (!(err instanceof GuestRefusal && (!init || init.status !== undefined))) throw err;
    });
    for (const rec of this.procs.ofContainer(cid)) this.procs.drop(rec);
    const c = this.containers.get(cid);
    if (c) {
      c.started = false;
      c.prepared = false;
    }
    await this.unstage(cid);
  }

  private async unstage(cid: string): Promise<void> {
    if (this.share) await unstageRootfs(this.share, cid);
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

  /**
   * NEWCONTAINER. For a container our guest prepared, the same body with the streams of
   * the start: the guest only opens the gate. Otherwise it creates and starts it at once.
   */
  async startContainer(containerId: string, abort?: AbortSignal): Promise<StartResult> {
    const c = this.container(containerId);
    await this.clearExited(containerId, abort);
    const { spec } = c;
    const { extensions, prepares } = await this.connection();
    const prepared = c.prepared && prepares;
    if (!prepared) await this.stage(containerId, spec);
    const rec = this.procs.add(containerId, containerId, spec.terminal, extensions);
    const body = containerBody(containerId, spec, toProcess(containerId, spec, rec, extensions));
    try {
      rec.pid = startedPid(await this.send(Code.NEWCONTAINER, body, abort));
    } catch (err) {
      this.procs.drop(rec);
      // The guest removes a container it could not start; one it refused to start (another
      // body than it prepared) would stay: it goes too, so that nothing is left half-made.
      if (prepared) await this.send(Code.REMOVECONTAINER, { container: containerId } satisfies H.RemoveCommand, abort).catch(() => {});
      c.prepared = false;
      await this.unstage(containerId).catch(() => {});
      throw err;
    }
    c.started = true;
    c.prepared = false;
    if (!extensions) await this.initialSize(containerId, containerId, spec, abort);
    return started(rec.pid);
  }

  /** A deleted container: REMOVECONTAINER if the guest still has it, then its rootfs unstaged. */
  async releaseContainer(containerId: string, abort?: AbortSignal): Promise<void> {
    const c = this.containers.get(containerId);
    if (!c) return;
    // A prepared container waits at its gate in the guest: it goes as a stopped one does.
    if (c.started || (c.prepared && this.conn?.prepares !== false)) {
      await this.removeFromGuest(containerId, abort).catch((err: unknown) => {
        // The guest may have freed it already; the host side is released all the same.
        if (!(err instanceof VcError)) throw err;
      });
    }
    await this.unstage(containerId);
    this.containers.delete(containerId);
  }

  async exec(containerId: string, spec: ProcessSpec, execId: string, abort?: AbortSignal): Promise<ExecResult> {
    this.running(containerId);
    const known = this.procs.get(containerId, execId);
    if (known && !known.exit) throw alreadyExists(`process ${execId} already runs in container ${containerId}`);
    if (known) this.procs.drop(known);
    const { extensions } = await this.connection();
    const rec = this.procs.add(containerId, execId, spec.terminal, extensions);
    const body: H.ExecCommand = { container: containerId, process: toProcess(execId, spec, rec, extensions) };
    try {
      rec.pid = startedPid(await this.send(Code.EXECCMD, body, abort));
    } catch (err) {
      this.procs.drop(rec);
      throw err;
    }
    if (!extensions) await this.initialSize(containerId, execId, spec, abort);
    return { execId, ...started(rec.pid) };
  }

  /**
   * KILLCONTAINER with the 2018 runtime's allProcesses field: upstream signals the init pid
   * only, our guest honours `all` by signalling every member of the container (its cgroup,
   * or the processes and their descendants), which per-process SIGNALPROCESS would not
   * reach (orphans, a process's children) or would reach twice.
   */
  async killContainer(containerId: string, signal: number, all: boolean, abort?: AbortSignal): Promise<void> {
    this.running(containerId);
    const { extensions } = await this.connection();
    this.markSignalled(this.procs.get(containerId, containerId), signal);
    if (!all) {
      await this.send(Code.KILLCONTAINER, { container: containerId, signal } satisfies H.KillCommand, abort);
      return;
    }
    if (extensions) {
      for (const rec of this.procs.live(containerId)) this.markSignalled(rec, signal);
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

  /** Remembers a signal that may end the process (before it is sent: the exit may come first). */
  private markSignalled(rec: ProcRecord | undefined, signal: number): void {
    if (rec && !HARMLESS_SIGNALS.has(signal)) rec.signalled = true;
  }

  private async signal(containerId: string, execId: string, signal: number, abort: AbortSignal | undefined): Promise<void> {
    const cmd: H.SignalCommand = { container: containerId, process: execId, signal };
    this.markSignalled(this.procs.get(containerId, execId), signal);
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
    if (!c.started) {
      // Stopped before it started: a prepared container leaves the guest, as kata's does.
      if (c.prepared && this.conn?.prepares !== false) {
        // NotFound: the guest has nothing of it (a reattached driver's guess was wrong).
        await this.removeFromGuest(containerId, abort).catch(ignoreGone);
        c.prepared = false;
        await this.unstage(containerId);
      }
      return undefined;
    }
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
    if (!rec.exit && !this.conn) return unknownExit();
    return (await waitAtMost(this.procs.wait(rec), Infinity, abort, `waiting for ${execId || containerId}`))!;
  }

  /** WINSIZE for a process started with a terminal. */
  async winsizeProcess(containerId: string, execId: string, rows: number, columns: number, abort?: AbortSignal): Promise<void> {
    this.running(containerId);
    const msg: H.WindowSizeMessage = { container: containerId, process: execId || containerId, row: rows, column: columns };
    await this.send(Code.WINSIZE, msg, abort);
  }

  /**
   * A stock hyperstart has no initial terminal size: WINSIZE right after the start, so the
   * process runs at the size asked for from then on (what it printed before is at the
   * guest's default). The process runs whatever the answer: a refusal (it already ended)
   * or a lost connection (reported on its own) does not undo its start.
   */
  private async initialSize(containerId: string, execId: string, spec: Pick<ProcessSpec, 'terminal' | 'consoleSize'>, abort: AbortSignal | undefined): Promise<void> {
    if (!spec.terminal || !spec.consoleSize) return;
    await this.winsizeProcess(containerId, execId, spec.consoleSize.rows, spec.consoleSize.cols, abort).catch(() => {});
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
    if (!(await this.connection()).extensions) {
      throw failedPrecondition(`this hyperstart guest cannot ${verb} containers: upstream hyperstart has no such command`);
    }
    const body: H.RemoveCommand = { container: containerId };
    await this.send(code, body, abort);
  }

  // ---- ps -----------------------------------------------------------------------------------

  /**
   * PSCONTAINER (our extension code): the guest lists the container's processes itself,
   * with the same supervisor the kata agent uses, so both agents answer alike. A stock
   * hyperstart has no ps command: there the listing runs as an exec in the container.
   */
  async processListContainer(containerId: string, options: ProcessListOptions, abort?: AbortSignal): Promise<Uint8Array> {
    this.running(containerId);
    if (!(await this.connection()).extensions) return this.psByExec(containerId, options, abort);
    const cmd: H.PsCommand = { container: containerId, format: options.format, psargs: options.args.length ? options.args : defaultPsArgs };
    return this.send(Code.PSCONTAINER, cmd, abort);
  }

  /**
   * The listing as an exec in the container, as the 2018 runtime ran ps through its shim
   * (hyperstart-ps.ts says how it finds the container's processes in the pod's shared
   * pid namespace). It needs sh and cat in the container, and ps for a table.
   */
  private async psByExec(containerId: string, options: ProcessListOptions, abort: AbortSignal | undefined): Promise<Uint8Array> {
    const execId = `vc-ps-${randomBytes(4).toString('hex')}`;
    const key = `${containerId}\0${execId}`;
    const out = { stdout: [] as Uint8Array[], stderr: [] as Uint8Array[] };
    this.captured.set(key, out);
    const rec = this.procs.add(containerId, execId, false, false);
    try {
      const spec = { args: psExecArgs(options, defaultPsArgs), env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], cwd: '/', user: '', terminal: false };
      await this.send(Code.EXECCMD, { container: containerId, process: toProcess(execId, spec, rec, false) } satisfies H.ExecCommand, abort);
      const exit = (await waitAtMost(this.procs.wait(rec), Infinity, abort, `ps in container ${containerId}`))!;
      if (exit.exitStatus !== 0) {
        throw failedPrecondition(`ps in container ${containerId} exited with ${exit.exitStatus}: ${Buffer.concat(out.stderr).toString('utf8').trim()}`);
      }
      return psExecResult(Buffer.concat(out.stdout).toString('utf8'), options.format);
    } finally {
      this.captured.delete(key);
      this.procs.drop(rec);
    }
  }
}

/** Signals whose default action never ends a process (SIGCHLD, SIGCONT, SIGURG, SIGWINCH). */
const HARMLESS_SIGNALS: ReadonlySet<number> = new Set([0, 17, 18, 23, 28]);

/** A started process's pid; a stock hyperstart's ACK carries none. */
const started = (pid: number): StartResult => (pid > 0 ? { pid } : { pid: 0, pidUnknown: true });

/** The container NEWCONTAINER (and PREPARECONTAINER) carries. */
function containerBody(id: string, spec: ContainerSpec, process: H.Process): H.Container {
  return {
    id,
    image: id,
    rootfs: spec.rootfs ? ROOTFS_DIR : '',
    process,
    ...(spec.privileged ? { privileged: true } : {}),
  };
}

/** A process as hyperstart carries it; without `rec` it has no streams (PREPARECONTAINER). */
function toProcess(id: string, spec: Pick<ProcessSpec, 'args' | 'env' | 'cwd' | 'user' | 'terminal' | 'consoleSize'>, rec: ProcRecord | undefined, extensions: boolean): H.Process {
  const envs = spec.env.map((kv) => {
    const eq = kv.indexOf('=');
    return eq < 0 ? { env: kv, value: '' } : { env: kv.slice(0, eq), value: kv.slice(eq + 1) };
  });
  const p: H.Process = { id, args: spec.args, envs, terminal: spec.terminal, ...(rec ? { stdio: rec.stdio, stderr: rec.stderr } : {}) };
  if (spec.cwd) p.workdir = spec.cwd;
  if (spec.user) p.user = spec.user;
  // Our guest's extension field; a stock one gets WINSIZE after the start (initialSize).
  if (extensions && spec.terminal && spec.consoleSize) p.consoleSize = { rows: spec.consoleSize.rows, columns: spec.consoleSize.cols };
  return p;
}

/** The codes in our guest's EXTENSIONS reply (an empty list if it says nothing readable). */
function servedCodes(reply: Uint8Array): number[] {
  try {
    const codes = decodeJson<unknown>(reply);
    return Array.isArray(codes) ? codes.filter((c): c is number => typeof c === 'number') : [];
  } catch {
    return [];
  }
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

/** The codes our guest leads its ERROR text with. */
const codes: Readonly<Record<string, true>> = {
  NotFound: true,
  AlreadyExists: true,
  FailedPrecondition: true,
  InvalidArgument: true,
  DeadlineExceeded: true,
  Unavailable: true,
  ResourceExhausted: true,
  Internal: true,
};

/** The guest answered ERROR (whatever it said, or did not say). */
class GuestRefusal extends VcError {}

/**
 * The guest's ERROR as a VcError. Our guest leads its text with a code ("NotFound: ...");
 * other texts ("no such container", "invalid signal") are classified by what they say; a
 * stock hyperstart says nothing at all, which is a refusal of unknown cause.
 */
function fromGuest(err: GuestError): VcError {
  const m = /^([A-Za-z]+): ([\s\S]*)$/.exec(err.detail);
  const code = m && m[1]! in codes ? (m[1] as ErrorCode) : undefined;
  if (code) return new GuestRefusal(code, `hyperstart guest refused ${err.command}: ${m![2]}`);
  const text = err.detail;
  if (!text) return new GuestRefusal(ErrorCode.FailedPrecondition, `hyperstart guest refused ${err.command} (a stock hyperstart gives no reason)`);
  if (/no such (container|process)|not found/i.test(text)) return new GuestRefusal(ErrorCode.NotFound, err.message);
  if (/already exists/i.test(text)) return new GuestRefusal(ErrorCode.AlreadyExists, err.message);
  if (saysExhausted(text)) return new GuestRefusal(ErrorCode.ResourceExhausted, err.message);
  if (/invalid/i.test(text)) return new GuestRefusal(ErrorCode.InvalidArgument, err.message);
  return new GuestRefusal(ErrorCode.FailedPrecondition, err.message);
}

function ignoreGone(err: unknown): void {
  if (err instanceof VcError && err.code === 'NotFound') return;
  throw err;
}

registerAgent('hyperstart', () => new HyperstartAgent());
