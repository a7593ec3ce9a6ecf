// The guest's containers and processes, and what each ctl command does to them.
// Methods throw CommandError with the text the host gets in ERROR.
import { readFileSync } from 'node:fs';
import { EVENT_FINISHED } from '../../protos/hyperstart/codes.js';
import type * as H from '../../protos/hyperstart/types.js';
import { run, SpawnError, type Running } from './runner.js';

export class CommandError extends Error {}

/** Where the pod sends what it produces: stream frames (empty = EOF) and exit events. */
export interface PodOutput {
  stream(seq: number, data: Uint8Array): void;
  event(event: H.ProcessAsyncEvent): void;
}

interface Proc {
  id: string;
  stdio: number;
  stderr: number;
  terminal: boolean;
  pid: number;
  running?: Running;
  status?: number;
  /** Settles when the exit has been reported. */
  done: Promise<void>;
}

interface GuestContainer {
  id: string;
  rootfs: string;
  init: Proc;
  procs: Map<string, Proc>;
  paused: boolean;
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export class Pod {
  hostname = '';
  shareDir = '';
  private readonly containers = new Map<string, GuestContainer>();
  /** Stream seq → process, for stdin and seq reuse checks. */
  private readonly streams = new Map<number, Proc>();
  private outputFlowing = true;

  constructor(private readonly out: PodOutput) {}

  start(pod: H.Pod): void {
    if (typeof pod?.hostname !== 'string') throw new CommandError('invalid pod: hostname missing');
    this.hostname = pod.hostname;
    this.shareDir = pod.shareDir ?? '';
  }

  async newContainer(c: H.Container): Promise<H.StartedReply> {
    if (typeof c?.id !== 'string' || c.id === '' || !c.process) throw new CommandError('invalid container: id and process are required');
    if (this.containers.has(c.id)) throw new CommandError(`container ${c.id} already exists`);
    const procId = c.process.id || c.id;
    const container: GuestContainer = { id: c.id, rootfs: c.rootfs ?? '', init: undefined!, procs: new Map(), paused: false };
    container.init = await this.spawn(container, procId, c.process);
    this.containers.set(c.id, container);
    return { pid: container.init.pid };
  }

  async exec(cmd: H.ExecCommand): Promise<H.StartedReply> {
    const c = this.container(cmd?.container);
    if (!cmd.process?.id) throw new CommandError('invalid exec: process.id is required');
    if (c.init.status !== undefined) throw new CommandError(`container ${c.id} has exited`);
    const known = c.procs.get(cmd.process.id);
    if (known && known.status === undefined) throw new CommandError(`process ${cmd.process.id} already exists in container ${c.id}`);
    const p = await this.spawn(c, cmd.process.id, cmd.process);
    return { pid: p.pid };
  }

  /** KILLCONTAINER: the init pid only, or every process group with allProcesses. */
  kill(cmd: H.KillCommand): void {
    const c = this.container(cmd?.container);
    checkSignal(cmd.signal);
    if (cmd.allProcesses) {
      this.signalGroups(c, cmd.signal);
      return;
    }
    if (c.init.status !== undefined) throw new CommandError('no such process');
    sendSignal(c.init.pid, cmd.signal);
  }

  /** SIGNALPROCESS: the process's whole group. */
  signal(cmd: H.SignalCommand): void {
    const c = this.container(cmd?.container);
    checkSignal(cmd.signal);
    const p = c.procs.get(cmd.process);
    if (!p) throw new CommandError(`no such process ${cmd.process} in container ${c.id}`);
    sendSignal(-p.pid, cmd.signal);
  }

  winsize(msg: H.WindowSizeMessage): void {
    const c = this.container(msg?.container);
    const p = c.procs.get(msg.process);
    if (!p) throw new CommandError(`no such process ${msg.process} in container ${c.id}`);
    if (!p.terminal) throw new CommandError(`process ${msg.process} has no terminal`);
    // Terminal processes run on pipes here (no pty), so there is no size to set.
  }

  /** REMOVECONTAINER: only once init has exited; what is left of the container is killed. */
  remove(cmd: H.RemoveCommand): void {
    const c = this.container(cmd?.container);
    if (c.init.status === undefined) throw new CommandError(`container ${c.id} is still running`);
    this.signalGroups(c, 9);
    this.containers.delete(c.id);
    for (const p of c.procs.values()) if (this.streams.get(p.stdio) === p) this.forgetStreams(p);
  }

  /**
   * Pause by stopping every process group of the container (SIGSTOP cannot be caught);
   * answered once the group leaders show as stopped, since signals land asynchronously.
   */
  async pause(cmd: H.RemoveCommand): Promise<void> {
    const c = this.container(cmd?.container);
    this.signalGroups(c, 19);
    c.paused = true;
    await settled(this.leaders(c), true);
  }

  async resume(cmd: H.RemoveCommand): Promise<void> {
    const c = this.container(cmd?.container);
    this.signalGroups(c, 18);
    c.paused = false;
    await settled(this.leaders(c), false);
  }

  private leaders(c: GuestContainer): number[] {
    return [...c.procs.values()].filter((p) => p.status === undefined).map((p) => p.pid);
  }

  /** DESTROYPOD: kills everything and resolves once every exit has been reported. */
  async destroy(): Promise<void> {
    const all = [...this.containers.values()];
    for (const c of all) {
      this.signalGroups(c, 9);
      if (c.paused) this.signalGroups(c, 18);
    }
    await Promise.all(all.flatMap((c) => [...c.procs.values()].map((p) => p.done)));
    this.containers.clear();
  }

  /** Holds every process's output while the host's tty socket is backed up. */
  setOutputFlow(flowing: boolean): void {
    if (flowing === this.outputFlowing) return;
    this.outputFlowing = flowing;
    for (const c of this.containers.values()) {
      for (const p of c.procs.values()) {
        if (p.status !== undefined) continue;
        if (flowing) p.running?.resumeOutput();
        else p.running?.pauseOutput();
      }
    }
  }

  /** Host→guest stream data (stdin); false when the seq belongs to no live process. */
  stdin(seq: number, data: Uint8Array): boolean {
    const p = this.streams.get(seq);
    if (!p?.running || seq !== p.stdio) return false;
    if (data.byteLength === 0) p.running.endInput();
    else p.running.write(data);
    return true;
  }

  private container(id: string | undefined): GuestContainer {
    const c = id === undefined ? undefined : this.containers.get(id);
    if (!c) throw new CommandError('no such container');
    return c;
  }

  private async spawn(c: GuestContainer, id: string, spec: H.Process): Promise<Proc> {
    if (!Array.isArray(spec.args) || spec.args.length === 0) throw new CommandError('invalid process: args are required');
    const stdio = spec.stdio ?? 0;
    const stderr = spec.stderr ?? 0;
    for (const seq of [stdio, stderr]) {
      if (seq && this.streams.has(seq)) throw new CommandError(`stream seq ${seq} is in use`);
    }
    const env: Record<string, string> = {};
    for (const e of spec.envs ?? []) env[e.env] = e.value;
    env.PATH ??= DEFAULT_PATH;
    if (this.hostname) env.HOSTNAME ??= this.hostname;
    let reported!: () => void;
    const p: Proc = { id, stdio, stderr, terminal: !!spec.terminal, pid: 0, done: new Promise((r) => (reported = r)) };
    try {
      p.running = await run(
        { args: spec.args, env, cwd: spec.workdir ?? '', user: spec.user ?? '', rootfs: c.rootfs },
        {
          stdout: (d) => stdio && this.out.stream(stdio, d),
          // A terminal (or stderr seq 0) shares the stdio stream.
          stderr: (d) => (stderr || stdio) && this.out.stream(stderr || stdio, d),
          exit: (status) => {
            p.status = status;
            this.forgetStreams(p);
            if (stdio) this.out.stream(stdio, new Uint8Array());
            if (stderr) this.out.stream(stderr, new Uint8Array());
            this.out.event({ container: c.id, process: id, event: EVENT_FINISHED, status });
            reported();
          },
        },
      );
    } catch (err) {
      throw new CommandError(err instanceof SpawnError ? err.message : String(err));
    }
    p.pid = p.running.pid;
    if (!this.outputFlowing) p.running.pauseOutput();
    c.procs.set(id, p);
    if (stdio) this.streams.set(stdio, p);
    if (stderr) this.streams.set(stderr, p);
    return p;
  }

  private forgetStreams(p: Proc): void {
    if (this.streams.get(p.stdio) === p) this.streams.delete(p.stdio);
    if (this.streams.get(p.stderr) === p) this.streams.delete(p.stderr);
  }

  /** Every group the container's processes lead; a group already gone is skipped. */
  private signalGroups(c: GuestContainer, signal: number): void {
    for (const p of c.procs.values()) {
      try {
        process.kill(-p.pid, signal);
      } catch {
        /* the group is empty */
      }
    }
  }
}

const PAUSE_SETTLE_MS = 1_000;

/** Waits (briefly) until each process is stopped, or no longer stopped; gone counts as settled. */
async function settled(pids: number[], stopped: boolean): Promise<void> {
  const until = Date.now() + PAUSE_SETTLE_MS;
  let pending = pids;
  while (pending.length > 0 && Date.now() < until) {
    pending = pending.filter((pid) => {
      const state = procState(pid);
      return state !== undefined && (state === 'T' || state === 't') !== stopped;
    });
    if (pending.length > 0) await new Promise((r) => setTimeout(r, 1));
  }
  if (pending.length > 0) throw new CommandError(`processes ${pending.join(', ')} did not ${stopped ? 'stop' : 'continue'}`);
}

/** The state letter from /proc/<pid>/stat; undefined when the process is gone (or a zombie). */
function procState(pid: number): string | undefined {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0];
    return state === 'Z' || state === 'X' ? undefined : state;
  } catch {
    return undefined;
  }
}

function checkSignal(signal: unknown): asserts signal is number {
  if (!Number.isInteger(signal) || (signal as number) < 1 || (signal as number) > 64) throw new CommandError('invalid signal');
}

function sendSignal(pid: number, signal: number): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CommandError(code === 'ESRCH' ? 'no such process' : code === 'EPERM' ? 'no permission' : 'kill failed');
  }
}
