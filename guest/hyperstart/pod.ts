// The guest's pod: hyperstart commands translated onto the shared process supervisor
// (guest/common), plus what hyperstart adds on top of it: output pushed on tty streams,
// stdin taken from them, and exits pushed as PROCESSASYNCEVENT after the streams' EOF.
import { writeFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { GuestError, mount9p, parseUser, Reaper, sharedPath, Supervisor, unmount, type CgroupDriver, type GuestLog, type OciRuntime, type ProcessSpec } from '../common/index.js';
import { EVENT_FINISHED } from '../../protos/hyperstart/codes.js';
import type * as H from '../../protos/hyperstart/types.js';

/** Where the pod sends what it produces. */
export interface PodOutput {
  /** Stream data (empty = EOF); resolves when it may send more (back-pressure). */
  stream(seq: number, data: Uint8Array): Promise<void>;
  event(event: H.ProcessAsyncEvent): void;
}

export interface PodOptions {
  cgroups: CgroupDriver | undefined;
  /** Run processes in a reaping pid namespace (the guest is PID 1). */
  reaper: boolean;
  log: GuestLog;
  /**
   * Where container rootfs are found: `<sharedRoot>/<image>/<rootfs>`. STARTPOD's
   * shareDir (a 9p tag) is mounted here; without one the directory is used as it is.
   */
  sharedRoot: string;
  /** The guest is a whole VM: STARTPOD's hostname becomes the kernel's. */
  setHostname?: boolean;
  /**
   * Behave like a stock hyperstart as observed: a container is freed as soon as its init
   * exits (a later REMOVECONTAINER is refused), EOF goes on the stdio stream only (never
   * on stderr), a death by a signal is reported with status 0, and KILLCONTAINER signals
   * the init process only (allProcesses is not a field upstream knows).
   */
  stock?: boolean;
  oci?: OciRuntime;
  stateDir: string;
}

interface Streams {
  container: string;
  process: string;
}

/**
 * After an exit, output a background child still holds open is given this long without
 * any data before the exit is reported anyway (its EOF follows whenever the pipe ends).
 */
const OUTPUT_IDLE_MS = 200;
const REMOVE_TIMEOUT_S = 10;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Pod {
  hostname = '';
  private sup?: Supervisor;
  private readonly reaper: Reaper | undefined;
  /** stdio seq → process, for stdin; a seq stays taken until its process is reported. */
  private readonly stdin = new Map<number, Streams>();
  private readonly taken = new Set<number>();
  private readonly initIds = new Map<string, string>();
  /** Exit reports still on their way (DESTROYPOD waits for them). */
  private readonly reporting = new Set<Promise<void>>();
  /** Exit reports of each container's execs still on their way (a stock free waits for them). */
  private readonly execReports = new Map<string, Set<Promise<void>>>();
  /** Containers prepared (PREPARECONTAINER) and not started yet, with the body they were prepared from. */
  private readonly prepared = new Map<string, H.Container>();

  constructor(
    private readonly out: PodOutput,
    private readonly options: PodOptions,
  ) {
    this.reaper = options.reaper ? new Reaper(options.log) : undefined;
  }

  private get supervisor(): Supervisor {
    if (!this.sup) throw new GuestError('FailedPrecondition', 'the pod is not started: send STARTPOD first');
    return this.sup;
  }

  private mounted = false;

  async start(pod: H.Pod): Promise<void> {
    if (typeof pod?.hostname !== 'string') throw new GuestError('InvalidArgument', 'invalid pod: hostname missing');
    if (this.sup) throw new GuestError('AlreadyExists', 'the pod is already started');
    if (pod.shareDir !== undefined && typeof pod.shareDir !== 'string') throw new GuestError('InvalidArgument', 'invalid pod: shareDir must be a 9p tag');
    if (pod.shareDir && !this.mounted) {
      await mount9p(pod.shareDir, this.options.sharedRoot);
      this.mounted = true;
    }
    if (this.options.setHostname && pod.hostname) writeFileSync('/proc/sys/kernel/hostname', pod.hostname.slice(0, 64));
    this.hostname = pod.hostname;
    const group = `hyperstart-${pod.hostname.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64)}-${process.pid}`;
    this.sup = new Supervisor({
      group,
      cgroups: this.options.cgroups,
      reaper: this.reaper,
      log: this.options.log,
      ...(this.options.oci ? { oci: this.options.oci, stateDir: this.options.stateDir } : {}),
    });
  }

  /**
   * PREPARECONTAINER: the container is created (bundle, OCI create) with its init held at
   * the gate; NEWCONTAINER starts it. The same body again is acknowledged (a host that
   * retries); another one under that id is AlreadyExists.
   */
  async prepare(c: H.Container): Promise<void> {
    const sup = this.supervisor;
    checkContainer(c);
    const earlier = this.prepared.get(c.id);
    if (earlier) {
      if (sameContainer(earlier, c)) return;
      throw new GuestError('AlreadyExists', `container ${c.id} is already prepared, from another body`);
    }
    await this.create(sup, c);
    this.prepared.set(c.id, c);
  }

  private async create(sup: Supervisor, c: H.Container): Promise<void> {
    // As upstream: the rootfs is <shared root>/<image>/<rootfs>; none given, the guest's own root.
    const root = c.rootfs ? sharedPath(this.options.sharedRoot, c.image ?? '', c.rootfs) : '';
    // A stock hyperstart runs every container of the pod in the pod's pid namespace: the
    // guest's, when it is one's PID 1 (a guest that is not has no pod namespace to share).
    const podPidNamespace = !!this.options.stock && process.pid === 1;
    const initId = c.process.id || c.id;
    await sup.createContainer({ id: c.id, initId, root, process: processSpec(c.process, this.options.stock), hostname: this.hostname, privileged: c.privileged === true, podPidNamespace });
  }

  /** NEWCONTAINER: creates and starts, or starts a prepared container (the same body, its streams aside). */
  async newContainer(c: H.Container): Promise<H.StartedReply> {
    const sup = this.supervisor;
    checkContainer(c);
    const initId = c.process.id || c.id;
    const earlier = this.prepared.get(c.id);
    if (earlier && !sameContainer(earlier, c)) {
      throw new GuestError('FailedPrecondition', `container ${c.id} was prepared from another body: start it with the same one, or remove it first`);
    }
    const seqs = this.claim(c.process);
    try {
      if (!earlier) await this.create(sup, c);
      this.prepared.delete(c.id);
      let pid: number;
      try {
        pid = await sup.startContainer(c.id);
      } catch (err) {
        await sup.removeContainer(c.id, REMOVE_TIMEOUT_S).catch(() => {});
        throw err;
      }
      this.initIds.set(c.id, initId);
      this.follow(c.id, initId, seqs);
      return { pid };
    } catch (err) {
      this.release(seqs);
      throw err;
    }
  }

  async exec(cmd: H.ExecCommand): Promise<H.StartedReply> {
    const sup = this.supervisor;
    if (!cmd?.container || !cmd.process?.id) throw new GuestError('InvalidArgument', 'invalid exec: container and process.id are required');
    const seqs = this.claim(cmd.process);
    try {
      const pid = await sup.exec(cmd.container, cmd.process.id, processSpec(cmd.process, this.options.stock));
      this.follow(cmd.container, cmd.process.id, seqs);
      return { pid };
    } catch (err) {
      this.release(seqs);
      throw err;
    }
  }

  /** KILLCONTAINER: the init process, or with allProcesses every process of the container. */
  async kill(cmd: H.KillCommand): Promise<void> {
    const sup = this.supervisor;
    sup.state(cmd?.container); // NotFound for an unknown container
    const all = cmd.allProcesses && !this.options.stock;
    await sup.signal(cmd.container, all ? '' : (this.initIds.get(cmd.container) ?? cmd.container), cmd.signal);
  }

  /** SIGNALPROCESS: one process of the container. */
  async signal(cmd: H.SignalCommand): Promise<void> {
    if (!cmd?.process) throw new GuestError('InvalidArgument', 'invalid signal: process is required');
    await this.supervisor.signal(cmd.container, cmd.process, cmd.signal);
  }

  winsize(msg: H.WindowSizeMessage): Promise<void> {
    return this.supervisor.resize(msg?.container, msg.process, msg.row, msg.column);
  }

  /**
   * REMOVECONTAINER: refused until the init process has exited, as upstream does; a
   * prepared container that was never started goes at once (its gate never opens).
   */
  async remove(cmd: H.RemoveCommand): Promise<void> {
    const sup = this.supervisor;
    const state = sup.state(cmd?.container);
    const prepared = state === 'created' && this.prepared.has(cmd.container);
    if (state !== 'stopped' && !prepared) throw new GuestError('FailedPrecondition', `container ${cmd.container} is ${state}: it has not exited`);
    await sup.removeContainer(cmd.container, REMOVE_TIMEOUT_S);
    this.prepared.delete(cmd.container);
    this.initIds.delete(cmd.container);
  }

  pause(cmd: H.RemoveCommand): Promise<void> {
    return this.supervisor.pause(cmd?.container);
  }

  resume(cmd: H.RemoveCommand): Promise<void> {
    return this.supervisor.resume(cmd?.container);
  }

  list(cmd: H.PsCommand): Promise<Buffer> {
    return this.supervisor.listProcesses(cmd?.container, cmd.format, cmd.psargs ?? []);
  }

  /** DESTROYPOD (and SIGTERM): ends every process and resolves once every exit is reported. */
  async destroy(): Promise<void> {
    await this.sup?.destroy();
    this.prepared.clear();
    while (this.reporting.size > 0) await Promise.all(this.reporting);
    await this.reaper?.stop();
    if (this.mounted) await unmount(this.options.sharedRoot);
    this.mounted = false;
  }

  /** Host→guest stream data; false when the seq is no live process's stdin. */
  input(seq: number, data: Uint8Array): boolean {
    const s = this.stdin.get(seq);
    if (!s || !this.sup) return false;
    try {
      if (data.byteLength === 0) this.sup.closeStdin(s.container, s.process);
      else void this.sup.write(s.container, s.process, data).catch(() => {});
    } catch {
      return false;
    }
    return true;
  }

  private claim(p: H.Process): { stdio: number; stderr: number } {
    const stdio = p.stdio ?? 0;
    const stderr = p.stderr ?? 0;
    for (const seq of [stdio, stderr]) {
      if (seq && this.taken.has(seq)) throw new GuestError('AlreadyExists', `stream seq ${seq} is in use`);
    }
    if (stdio) this.taken.add(stdio);
    if (stderr) this.taken.add(stderr);
    return { stdio, stderr };
  }

  private release(seqs: { stdio: number; stderr: number }): void {
    this.taken.delete(seqs.stdio);
    this.taken.delete(seqs.stderr);
    this.stdin.delete(seqs.stdio);
  }

  /** Pumps a process's output onto its streams and reports its exit once they end. */
  private follow(container: string, process: string, seqs: { stdio: number; stderr: number }): void {
    const sup = this.supervisor;
    if (seqs.stdio) this.stdin.set(seqs.stdio, { container, process });
    let lastData = Date.now();
    let sending = 0;
    const pump = async (stream: 'stdout' | 'stderr', seq: number) => {
      for (;;) {
        const data = await sup.read(container, process, stream, 0).catch(() => new Uint8Array());
        if (data.byteLength === 0) return;
        // Without a stream seq the output has nowhere to go; it is read and dropped.
        if (!seq) continue;
        sending++;
        await this.out.stream(seq, data).finally(() => sending--);
        lastData = Date.now();
      }
    };
    // A terminal (stderr seq 0) shares the stdio stream.
    const pumped = Promise.all([pump('stdout', seqs.stdio), pump('stderr', seqs.stderr || seqs.stdio)]).then(async () => {
      if (seqs.stdio) await this.out.stream(seqs.stdio, new Uint8Array());
      if (seqs.stderr && !this.options.stock) await this.out.stream(seqs.stderr, new Uint8Array());
      this.release(seqs);
    });
    let ended = false;
    void pumped.then(() => (ended = true));
    const isInit = this.initIds.get(container) === process;
    const report = (async () => {
      const status = await sup.wait(container, process).catch(() => 255);
      // Output still moving (or held back by a slow host) is owed before the exit.
      while (!ended && (sending > 0 || Date.now() - lastData < OUTPUT_IDLE_MS)) await Promise.race([pumped, sleep(OUTPUT_IDLE_MS / 4)]);
      if (this.options.stock && isInit) await this.free(container);
      this.out.event({ container, process, event: EVENT_FINISHED, status: this.options.stock ? stockStatus(status) : status });
    })();
    this.reporting.add(report);
    void report.finally(() => this.reporting.delete(report));
    if (!isInit) {
      let reports = this.execReports.get(container);
      if (!reports) this.execReports.set(container, (reports = new Set()));
      reports.add(report);
      void report.finally(() => reports.delete(report));
    }
  }

  /**
   * Stock hyperstart frees a container when its init exits: once the execs (which die with
   * init) are reported, the container is gone before the host hears of the exit.
   */
  private async free(container: string): Promise<void> {
    // In the pod's pid namespace nothing ends them with their init: they go now.
    try {
      this.sup?.killRemaining(container);
    } catch {
      /* already gone */
    }
    while ((this.execReports.get(container)?.size ?? 0) > 0) await Promise.all(this.execReports.get(container)!);
    this.execReports.delete(container);
    this.initIds.delete(container);
    await this.sup?.removeContainer(container, REMOVE_TIMEOUT_S).catch((err: Error) => this.options.log.debug('container not freed', { containerId: container, err }));
  }
}

function checkContainer(c: H.Container): void {
  if (typeof c?.id !== 'string' || !c.process) throw new GuestError('InvalidArgument', 'invalid container: id and process are required');
}

/** The same container, but for the process's stream seqs, which belong to the start. */
function sameContainer(a: H.Container, b: H.Container): boolean {
  const bare = (c: H.Container) => {
    const { stdio: _stdio, stderr: _stderr, ...process } = c.process;
    return { ...c, process };
  };
  return isDeepStrictEqual(bare(a), bare(b));
}

/**
 * The status a stock hyperstart reports: a death by signal n (128 + n here) becomes 0.
 * A process that really exits with 129 to 192 reads the same; nothing here tells them apart.
 */
function stockStatus(status: number): number {
  return status > 128 && status <= 128 + 64 ? 0 : status;
}

const isSide = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 65_535;

/** A hyperstart Process as the supervisor's spec: env exactly as listed, ids or names. */
function processSpec(p: H.Process, stock?: boolean): ProcessSpec {
  if (!Array.isArray(p.args) || p.args.length === 0) throw new GuestError('InvalidArgument', 'invalid process: args are required');
  const user = parseUser(p.user ?? '');
  if (p.group) {
    if (/^\d+$/.test(p.group)) user.gid = Number(p.group);
    else user.group = p.group;
  }
  if (p.additionalGroups?.length) {
    if (!p.additionalGroups.every((g) => /^\d+$/.test(g))) throw new GuestError('InvalidArgument', 'additionalGroups must be numeric gids');
    user.additionalGids = p.additionalGroups.map(Number);
  }
  const spec: ProcessSpec = {
    args: p.args,
    env: (p.envs ?? []).map((e) => `${e.env}=${e.value}`),
    cwd: p.workdir || '/',
    user,
    terminal: !!p.terminal,
  };
  // Our extension (a stock hyperstart knows no initial size): sized before the process runs.
  const size = p.consoleSize;
  if (!stock && spec.terminal && size && isSide(size.rows) && isSide(size.columns)) spec.consoleSize = { rows: size.rows, cols: size.columns };
  return spec;
}
