// The kata agent driver (reference §6.4): every operation is a call to grpc.AgentService
// on the guest's socket. Operations connect per call and close after, unless the config
// asks for one long-lived connection. Exits and output are pulled from the guest (its
// protocol pushes nothing): after StartContainer and ExecProcess, a background WaitProcess
// and ReadStdout/ReadStderr loops run on one stream connection shared while any process
// runs, and report to the listener; a process's exit is reported after its output.
import { ErrorCode, failedPrecondition, unavailable, VcError } from '../../bus/errors.js';
import { MAX_HOSTNAME_LEN, type ContainerSpec, type SandboxSpec } from '../../machines/specs.js';
import { int64Limit, OOM_KILL_STAT, type AgentMethod, type Int64, type LinuxResources } from '../../protos/kata/index.js';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { guestEntry, guestEnv } from '../guest-binaries.js';
import {
  Capability,
  type Agent,
  type AgentInit,
  type AgentListener,
  type AdoptedGuest,
  unknownExit,
  type ContainerStats,
  type ExecResult,
  type ExitInfo,
  type GuestEndpoint,
  type GuestPlan,
  type ProcessListOptions,
  type ProcessSpec,
  type StartResult,
} from './agent.js';
import { ociProcess, ociSpec } from './kata-spec.js';
import { newProcessRoot } from './kata-pids.js';
import { socketName, type AgentConfigs } from './agent-type.js';
import { registerAgent } from './index.js';
import { stopWithGrace, waitAtMost } from './calls.js';
import { grpcTarget, KataConnection, pidFrom, type AgentRequest, type AgentResponse, type CallResult } from './kata-client.js';
import { ROOTFS_DIR, stageRootfs, unstageRootfs, type GuestShare } from '../shared-dir.js';

/** Where kata 1.x mounts the sandbox's 9p share in the guest (one directory per container). */
export const GUEST_SHARED_DIR = '/run/kata-containers/shared/containers/';

type Config = AgentConfigs['kata'];

const SIGTERM = 15;
const SIGKILL = 9;
const READ_CHUNK = 64 * 1024;
/** Exits of execs kept for waitProcess after they were reported (init exits are always kept). */
const MAX_REMEMBERED_EXEC_EXITS = 256;
/** After an exit, how long the output of a process may still take to arrive. */
const OUTPUT_GRACE_MS = 2_000;

export interface KataOptions {
  /** How long stopContainer waits after SIGTERM before SIGKILL. */
  stopGraceMs?: number;
}

/** A process the driver watches: its exit (from WaitProcess) once output has arrived. */
interface Watched {
  init: boolean;
  exit: Promise<ExitInfo | undefined>;
  exitInfo?: ExitInfo;
}

const key = (cid: string, execId: string) => `${cid}\u0000${execId}`;
const now = () => new Date().toISOString();

const isCode = (err: unknown, code: ErrorCode) => err instanceof VcError && err.code === code;

export class KataAgent implements Agent {
  readonly type = 'kata' as const;
  private config!: Config;
  private sandbox!: SandboxSpec;
  private listener: AgentListener | undefined;
  private address = '';
  private runDir = '';
  private log: Logger | undefined;
  private readonly stopGraceMs: number;
  /** The long-lived connection for operations (longLiveConn). */
  private opConn: KataConnection | undefined;
  /** The connection health checks reuse between checks. */
  private checkConn: KataConnection | undefined;
  /** The connection the background waits and reads share, open while processes run. */
  private streamConn: KataConnection | undefined;
  private streamUsers = 0;
  private readonly watched = new Map<string, Watched>();
  private readonly containers = new Map<string, { spec: ContainerSpec; removed: boolean }>();
  private stopping = false;
  /** The backend's 9p export (a VM), where container rootfs are staged. */
  private share: GuestShare | undefined;
  /** Whether the guest puts pids in its replies (ours does, the stock agent does not); undefined until a start says. */
  private pidTrailers: boolean | undefined;

  constructor(options: KataOptions = {}) {
    this.stopGraceMs = options.stopGraceMs ?? 2_000;
  }

  private logger(): Logger {
    return (this.log ??= fallbackLog());
  }

  // ---- connection ------------------------------------------------------------------

  async init(init: AgentInit): Promise<void> {
    this.config = init.config as Config;
    this.sandbox = init.sandbox;
    this.listener = init.listener;
    this.log = init.log?.child({ agent: 'kata' });
    // A name inside the run directory (agent-type.ts refuses paths): nothing else is dialled or removed.
    this.runDir = init.runDir;
    this.address = `unix://${join(init.runDir, socketName('grpcSocket', this.config.grpcSocket) || 'kata.sock')}`;
    grpcTarget(this.address); // validates
  }

  capabilities(): number {
    return Capability.blockDeviceSupport;
  }

  /** With longLiveConn, dials once and keeps the connection; otherwise every call dials. */
  async connect(): Promise<void> {
    if (!this.config.longLiveConn || this.opConn) return;
    const conn = new KataConnection(this.address, this.config.dialTimeoutMs);
    try {
      await conn.ready();
    } catch (err) {
      conn.close();
      throw err;
    }
    this.opConn = conn;
  }

  async disconnect(): Promise<void> {
    this.opConn?.close();
    this.opConn = undefined;
    this.checkConn?.close();
    this.checkConn = undefined;
  }

  /** One operation: on the long-lived connection, or on a connection of its own. */
  private async call<M extends AgentMethod>(
    method: M,
    request: AgentRequest<M>,
    abort: AbortSignal | undefined,
    deadlineMs: number | undefined = this.config.callTimeoutMs,
  ): Promise<CallResult<AgentResponse<M>>> {
    if (this.config.longLiveConn) {
      if (!this.opConn) await this.connect();
      return this.opConn!.call(method, request, deadlineMs, abort);
    }
    const conn = new KataConnection(this.address, this.config.dialTimeoutMs);
    try {
      await conn.ready(undefined, true, abort);
      return await conn.call(method, request, deadlineMs, abort);
    } finally {
      conn.close();
    }
  }

  private async op<M extends AgentMethod>(method: M, request: AgentRequest<M>, abort: AbortSignal | undefined, deadlineMs?: number): Promise<AgentResponse<M>> {
    return (await this.call(method, request, abort, deadlineMs)).response;
  }

  /**
   * Health.Check within the deadline. The monitor checks every second, so the check keeps
   * one connection of its own between checks (a fresh dial and HTTP/2 handshake per check
   * cost several times the check itself); a failed check drops it, and the next one dials
   * once: a socket that refuses connections then is unreachable, not slow. The caller
   * bounds the check (its abort carries the monitor's deadline).
   */
  async check(abort?: AbortSignal): Promise<void> {
    if (this.config.longLiveConn && this.opConn) {
      await this.opConn.health('Check', { service: '' }, undefined, abort);
      return;
    }
    let conn = this.checkConn;
    try {
      if (!conn) {
        conn = this.checkConn = new KataConnection(this.address, this.config.dialTimeoutMs);
        await conn.ready(undefined, false, abort);
      }
      await conn.health('Check', { service: '' }, undefined, abort);
    } catch (err) {
      conn?.close();
      if (this.checkConn === conn) this.checkConn = undefined;
      throw err;
    }
  }

  // ---- sandbox ---------------------------------------------------------------------

  async createSandbox(): Promise<GuestPlan> {
    return {
      endpoint: { grpcAddress: this.address },
      command: [process.execPath, guestEntry('kata-agent'), '--listen', this.address, '--state-parent', this.runDir],
      env: guestEnv(),
    };
  }

  locate(endpoint: GuestEndpoint): void {
    if (!endpoint.grpcAddress || endpoint.grpcAddress === this.address) return;
    grpcTarget(endpoint.grpcAddress);
    this.address = endpoint.grpcAddress;
  }

  async startSandbox(endpoint: GuestEndpoint, abort?: AbortSignal): Promise<void> {
    this.stopping = false;
    const hostname = (this.sandbox.hostname || this.sandbox.id).slice(0, MAX_HOSTNAME_LEN);
    // As kata 1.x: the 9p share is a storage of the sandbox, mounted by the agent.
    this.share = endpoint.share?.tag ? endpoint.share : undefined;
    const storages = this.share
      ? [{ driver: '9p', source: this.share.tag, fstype: '9p', options: ['trans=virtio', 'version=9p2000.L', 'nodev'], mount_point: GUEST_SHARED_DIR }]
      : [];
    const request = { hostname, sandbox_id: this.sandbox.id, storages };
    if (this.config.longLiveConn) {
      await this.connect(); // waits for the guest to listen, within the dial timeout
      await this.op('CreateSandbox', request, abort);
      return;
    }
    // The guest may still be starting: wait for it to listen, within the dial timeout. The
    // connection that found it listening carries CreateSandbox: one dial, not two (a dial
    // into a VM under TCG costs about 100 ms).
    const conn = new KataConnection(this.address, this.config.dialTimeoutMs);
    try {
      await conn.ready(undefined, true, abort);
      await conn.call('CreateSandbox', request, this.config.callTimeoutMs, abort);
    } finally {
      conn.close();
    }
  }

  async stopSandbox(abort?: AbortSignal): Promise<void> {
    this.stopping = true;
    try {
      await this.op('DestroySandbox', {}, abort);
    } finally {
      // Whatever the guest left running is gone with it; nobody waits for it any more.
      this.streamConn?.close();
      this.streamConn = undefined;
      this.streamUsers = 0;
      this.watched.clear();
      for (const [cid, c] of this.containers) {
        c.removed = true;
        if (this.share) await unstageRootfs(this.share, cid).catch((err: unknown) => this.logger().warn({ err, containerId: cid }, 'unstaging a rootfs failed'));
      }
    }
  }

  async onlineCPUMem(cpus: number, abort?: AbortSignal): Promise<void> {
    await this.op('OnlineCPUMem', { wait: false, nb_cpus: cpus }, abort);
  }

  // ---- containers --------------------------------------------------------------------

  private async sendCreate(spec: ContainerSpec, abort: AbortSignal | undefined): Promise<void> {
    // In a VM the rootfs reaches the guest through the share: staged, then named by its guest path.
    let root = spec.rootfs ?? '';
    if (this.share && root) {
      await stageRootfs(this.share, spec.id, root);
      root = `${GUEST_SHARED_DIR}${spec.id}/${ROOTFS_DIR}`;
    }
    const oci = ociSpec({ ...spec, rootfs: root }, this.sandbox.hostname ?? '');
    try {
      await this.op('CreateContainer', { container_id: spec.id, exec_id: spec.id, OCI: oci.spec, ...(oci.stringUser ? { string_user: oci.stringUser } : {}) }, abort);
    } catch (err) {
      if (this.share) await unstageRootfs(this.share, spec.id).catch(() => {});
      throw err;
    }
  }

  async createContainer(container: ContainerSpec, abort?: AbortSignal): Promise<void> {
    await this.sendCreate(container, abort);
    this.containers.set(container.id, { spec: container, removed: false });
  }

  async startContainer(containerId: string, abort?: AbortSignal): Promise<StartResult> {
    const record = this.containers.get(containerId);
    // A stopped container was removed from the guest: it is created there again.
    if (record?.removed) {
      await this.sendCreate(record.spec, abort);
      record.removed = false;
    }
    // A stock agent's created container may already hold its init (waiting to be started).
    const before = this.pidTrailers === true ? undefined : await this.listPids(containerId, abort).catch(() => undefined);
    const { trailers } = await this.call('StartContainer', { container_id: containerId }, abort);
    this.watch(containerId, containerId);
    const pid = pidFrom(trailers);
    this.pidTrailers = pid !== undefined;
    if (pid !== undefined) return { pid };
    return this.learnPid(containerId, before, true, abort);
  }

  async exec(containerId: string, process: ProcessSpec, execId: string, abort?: AbortSignal): Promise<ExecResult> {
    const oci = ociProcess(process);
    const before = this.pidTrailers === true ? undefined : await this.listPids(containerId, abort).catch(() => undefined);
    const { trailers } = await this.call(
      'ExecProcess',
      {
        container_id: containerId,
        exec_id: execId,
        process: oci.process,
        ...(oci.stringUser ? { string_user: oci.stringUser } : {}),
      },
      abort,
    );
    this.watch(containerId, execId);
    const pid = pidFrom(trailers);
    if (pid !== undefined) {
      this.pidTrailers = true;
      return { execId, pid };
    }
    this.pidTrailers = false;
    return { execId, ...(await this.learnPid(containerId, before, false, abort)) };
  }

  private async listPids(containerId: string, abort: AbortSignal | undefined): Promise<number[]> {
    const res = await this.op('ListProcesses', { container_id: containerId, format: 'json', args: [] }, abort);
    const pids: unknown = JSON.parse(Buffer.from(res.process_list ?? new Uint8Array()).toString('utf8') || '[]');
    if (!Array.isArray(pids) || !pids.every((p) => Number.isInteger(p))) throw new Error('ListProcesses json is not an array of pids');
    return pids as number[];
  }

  /**
   * The pid of the process just started, for a guest that does not say it (reference
   * §10): the one pid ListProcesses (json) shows now and did not before. When it shows
   * several (the process forked already), ps's parent links pick the one whose parent is
   * outside the container. Anything else, or a process already gone, is unknown.
   */
  private async learnPid(containerId: string, before: number[] | undefined, init: boolean, abort: AbortSignal | undefined): Promise<StartResult> {
    try {
      const now = await this.listPids(containerId, abort);
      const known = new Set(before ?? []);
      // A stock created container's waiting init is the one that started.
      if (init && before?.length === 1 && now.includes(before[0]!)) return { pid: before[0]! };
      const added = before === undefined ? [] : now.filter((p) => !known.has(p));
      if (added.length === 1) return { pid: added[0]! };
      if (added.length > 1) {
        const table = await this.op('ListProcesses', { container_id: containerId, format: 'table', args: ['-o', 'pid,ppid'] }, abort);
        const root = newProcessRoot(Buffer.from(table.process_list ?? new Uint8Array()).toString('utf8'), known);
        if (root !== undefined) return { pid: root };
      }
    } catch (err) {
      this.logger().debug({ err, containerId, sandboxId: this.sandbox.id }, 'could not learn the pid of a started process');
    }
    return { pid: 0, pidUnknown: true };
  }

  async stopContainer(containerId: string, abort?: AbortSignal): Promise<ExitInfo | undefined> {
    const record = this.containers.get(containerId);
    if (record?.removed) return this.watched.get(key(containerId, containerId))?.exitInfo;
    const init = this.watched.get(key(containerId, containerId));
    let exit = init?.exitInfo;
    if (init && !exit) {
      exit = await stopWithGrace({
        what: `container ${containerId}`,
        terminate: () => this.signalProcess(containerId, '', SIGTERM, true, abort).catch(ignoreGone),
        kill: () => this.signalProcess(containerId, '', SIGKILL, true, abort).catch(ignoreGone),
        exited: init.exit,
        graceMs: this.stopGraceMs,
        killWaitMs: this.config.callTimeoutMs,
        signal: abort,
      });
    }
    // RemoveContainer kills what is left (execs included) and waits for it.
    await this.op('RemoveContainer', { container_id: containerId, timeout: 0 }, abort).catch((err: unknown) => {
      if (!isCode(err, ErrorCode.NotFound)) throw err;
    });
    if (record) record.removed = true;
    if (this.share) await unstageRootfs(this.share, containerId);
    return exit;
  }

  /** A deleted container: removed from the guest if it still is there, its rootfs unstaged. */
  async releaseContainer(containerId: string, abort?: AbortSignal): Promise<void> {
    const record = this.containers.get(containerId);
    if (!record) return;
    if (!record.removed) {
      await this.op('RemoveContainer', { container_id: containerId, timeout: 0 }, abort).catch((err: unknown) => {
        if (!isCode(err, ErrorCode.NotFound)) throw err;
      });
    }
    if (this.share) await unstageRootfs(this.share, containerId);
    this.containers.delete(containerId);
    this.watched.delete(key(containerId, containerId));
  }

  async killContainer(containerId: string, signal: number, all: boolean, abort?: AbortSignal): Promise<void> {
    await this.signalProcess(containerId, containerId, signal, all, abort);
  }

  async signalProcess(containerId: string, execId: string, signal: number, all: boolean, abort?: AbortSignal): Promise<void> {
    await this.op('SignalProcess', { container_id: containerId, exec_id: all ? '' : execId, signal }, abort);
  }

  async processListContainer(containerId: string, options: ProcessListOptions, abort?: AbortSignal): Promise<Uint8Array> {
    const res = await this.op('ListProcesses', { container_id: containerId, format: options.format, args: options.args }, abort);
    return res.process_list ?? new Uint8Array();
  }

  async pauseContainer(containerId: string, abort?: AbortSignal): Promise<void> {
    await this.op('PauseContainer', { container_id: containerId }, abort).catch(asStateRefusal);
  }

  async resumeContainer(containerId: string, abort?: AbortSignal): Promise<void> {
    await this.op('ResumeContainer', { container_id: containerId }, abort).catch(asStateRefusal);
  }

  async statsContainer(containerId: string, abort?: AbortSignal): Promise<ContainerStats> {
    const res = await this.op('StatsContainer', { container_id: containerId }, abort);
    const s = res.cgroup_stats;
    const oomKills = s?.memory_stats?.stats?.[OOM_KILL_STAT];
    // 64-bit values arrive as exact strings: a limit at the kernel's 2^63 means none (0, as
    // our guest says it); a counter past 2^53 becomes the nearest number the bus can carry.
    return {
      cpuUsageNs: counter(s?.cpu_stats?.cpu_usage?.total_usage),
      memoryUsageBytes: counter(s?.memory_stats?.usage?.usage),
      memoryLimitBytes: int64Limit(s?.memory_stats?.usage?.limit, 'memory limit'),
      pidsCurrent: counter(s?.pids_stats?.current),
      pidsLimit: int64Limit(s?.pids_stats?.limit, 'pids limit'),
      ...(oomKills !== undefined ? { oomKills: counter(oomKills) } : {}),
    };
  }

  async updateContainer(containerId: string, resources: LinuxResources, abort?: AbortSignal): Promise<void> {
    await this.op('UpdateContainer', { container_id: containerId, resources }, abort);
  }

  // ---- reattach ----------------------------------------------------------------------

  private adopted: Array<{ containerId: string; execId: string }> = [];

  adopt(guest: AdoptedGuest): void {
    this.share = guest.endpoint.share?.tag ? guest.endpoint.share : undefined;
    for (const c of guest.containers) {
      this.containers.set(c.spec.id, { spec: c.spec, removed: false });
      for (const execId of c.running) this.adopted.push({ containerId: c.spec.id, execId });
    }
  }

  /** WaitProcess again for every adopted process: the guest keeps an exit until one is waited for. */
  async reconcile(): Promise<void> {
    for (const { containerId, execId } of this.adopted.splice(0)) this.watch(containerId, execId, true);
  }

  // ---- processes ---------------------------------------------------------------------

  /** The exit of a process: the background waiter's when there is one, else WaitProcess. */
  async waitProcess(containerId: string, execId: string, abort?: AbortSignal): Promise<ExitInfo> {
    const w = this.watched.get(key(containerId, execId));
    if (w) {
      const exit = await waitAtMost(w.exit, Infinity, abort, `waiting for ${execId}`);
      if (exit) return exit;
      throw unavailable(`the exit of ${execId} in container ${containerId} is unknown: the guest stopped answering`);
    }
    const res = await this.op('WaitProcess', { container_id: containerId, exec_id: execId }, abort, undefined);
    return { exitStatus: res.status ?? 255, exitedAt: now() };
  }

  async writeProcessStdin(containerId: string, execId: string, data: Uint8Array, abort?: AbortSignal): Promise<number> {
    return (await this.op('WriteStdin', { container_id: containerId, exec_id: execId, data }, abort)).len ?? 0;
  }

  async closeProcessStdin(containerId: string, execId: string, abort?: AbortSignal): Promise<void> {
    await this.op('CloseStdin', { container_id: containerId, exec_id: execId }, abort);
  }

  async winsizeProcess(containerId: string, execId: string, height: number, width: number, abort?: AbortSignal): Promise<void> {
    await this.op('TtyWinResize', { container_id: containerId, exec_id: execId, row: height, column: width }, abort);
  }

  /** Starts the background wait and output pumps of a process just started. */
  private watch(containerId: string, execId: string, adopted = false): void {
    const conn = this.openStream();
    const pump = (stream: 'stdout' | 'stderr') => this.pump(conn, containerId, execId, stream);
    const output = Promise.all([pump('stdout'), pump('stderr')]);
    const entry: Watched = { init: execId === containerId, exit: Promise.resolve(undefined) };
    entry.exit = (async () => {
      try {
        const { response } = await conn.call('WaitProcess', { container_id: containerId, exec_id: execId });
        const exit: ExitInfo = { exitStatus: response.status ?? 255, exitedAt: now() };
        // Output first, so that whoever sees the exit also sees everything it printed.
        await waitAtMost(output, OUTPUT_GRACE_MS);
        entry.exitInfo = exit;
        this.listener?.processExited(containerId, execId, exit);
        if (execId !== containerId) this.forgetOldExecs();
        return exit;
      } catch (err) {
        // An adopted process the guest no longer knows (its exit went to the runtime that
        // died, or the guest forgot it): it ended, and nobody can tell how.
        if (adopted && isCode(err, ErrorCode.NotFound)) {
          const exit = unknownExit();
          entry.exitInfo = exit;
          this.listener?.processExited(containerId, execId, exit);
          return exit;
        }
        if (!this.stopping) this.logger().warn({ err, containerId, execId, sandboxId: this.sandbox.id }, 'lost the wait for a guest process');
        return undefined;
      } finally {
        await waitAtMost(output, OUTPUT_GRACE_MS).catch(() => {});
        this.closeStream(conn);
      }
    })();
    this.watched.set(key(containerId, execId), entry);
  }

  /** Drops the oldest reported exec exits beyond the limit. */
  private forgetOldExecs(): void {
    let reported = 0;
    for (const w of this.watched.values()) if (w.exitInfo && !w.init) reported++;
    for (const [k, w] of this.watched) {
      if (reported <= MAX_REMEMBERED_EXEC_EXITS) return;
      if (w.exitInfo && !w.init) {
        this.watched.delete(k);
        reported--;
      }
    }
  }

  private async pump(conn: KataConnection, containerId: string, execId: string, stream: 'stdout' | 'stderr'): Promise<void> {
    const method = stream === 'stdout' ? 'ReadStdout' : 'ReadStderr';
    try {
      for (;;) {
        const { response } = await conn.call(method, { container_id: containerId, exec_id: execId, len: READ_CHUNK });
        const data = response.data;
        if (!data || data.length === 0) return;
        this.listener?.output?.(containerId, execId, stream, data);
      }
    } catch (err) {
      // The stock agent ends a stream with an error whose message is EOF (io.EOF).
      if (isStreamEnd(err, method)) return;
      if (!this.stopping && !isCode(err, ErrorCode.NotFound)) this.logger().debug({ err, containerId, execId, stream }, 'output pump ended');
    }
  }

  private openStream(): KataConnection {
    this.streamConn ??= new KataConnection(this.address, this.config.dialTimeoutMs);
    this.streamUsers++;
    return this.streamConn;
  }

  private closeStream(conn: KataConnection): void {
    if (conn !== this.streamConn) return;
    if (--this.streamUsers > 0) return;
    conn.close();
    this.streamConn = undefined;
  }
}

let sharedLog: Logger | undefined;
/** For drivers used without a host logger (tests, tools): one logger for all of them. */
const fallbackLog = () => (sharedLog ??= pino({ name: 'kata-driver', level: process.env.LOG_LEVEL ?? 'info' }));

/** A 64-bit counter as a number: exact up to 2^53, the nearest number beyond. */
function counter(value: Int64 | undefined): number {
  if (value === undefined || value === '') return 0;
  try {
    return Number(BigInt(value));
  } catch {
    return 0;
  }
}

/** A read that failed with the stock agent's io.EOF: the end of the stream, not a failure. */
const isStreamEnd = (err: unknown, method: string) => err instanceof VcError && err.message === `${method}: EOF`;

/**
 * The stock agent passes libcontainer's refusal of a pause or resume in the wrong state on
 * as code Unknown ("container not running or created: paused", "container not paused"):
 * it is a FailedPrecondition, as our guest says it.
 */
function asStateRefusal(err: unknown): never {
  if (err instanceof VcError && err.code === ErrorCode.Internal && /: container not (running or created|paused)\b/.test(err.message)) {
    throw failedPrecondition(err.message);
  }
  throw err;
}

function ignoreGone(err: unknown): void {
  if (isCode(err, ErrorCode.NotFound)) return;
  throw err;
}

registerAgent('kata', () => new KataAgent());
