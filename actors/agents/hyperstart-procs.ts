// The host's view of the processes it started through hyperstart: stream sequence
// numbers, output routing, and exits. Like runv, an exit is complete only once the
// status is known AND the process's output streams reached EOF, so that every byte of
// output is delivered before the exit is reported.
import { unknownExit, type ExitInfo } from './agent.js';
import type { SavedStreams } from './hyperstart-streams.js';

/** How long an exit waits for its streams' EOF before it is reported anyway. */
const EOF_GRACE_MS = 2_000;

export interface ProcRecord {
  containerId: string;
  /** The container id for the init process. */
  execId: string;
  /** stdin + stdout. */
  stdio: number;
  /** 0 when stderr shares stdio (a terminal). */
  stderr: number;
  pid: number;
  /** The runtime sent it a signal (or one that ends it): on a stock guest a 0 may then be a death by signal. */
  signalled?: boolean;
  status?: number;
  /** The guest's status cannot be told apart from a death by a signal. */
  statusUnknown?: boolean;
  /** When the guest reported the exit. */
  finishedAt?: string;
  exit?: ExitInfo;
  open: Set<number>;
  waiters: Array<(exit: ExitInfo) => void>;
  grace?: NodeJS.Timeout;
}

export interface ProcReports {
  output(containerId: string, execId: string, stream: 'stdout' | 'stderr', data: Uint8Array): void;
  exited(containerId: string, execId: string, exit: ExitInfo): void;
}

const key = (cid: string, execId: string) => `${cid}\0${execId}`;

export class ProcessTable {
  /**
   * Sequence numbers start from the clock (1024 per millisecond) so that a runtime that
   * reattaches to a running guest never reuses a sequence an older driver handed out.
   */
  private nextSeq = Date.now() * 1024;
  private readonly bySeq = new Map<number, ProcRecord>();
  private readonly byId = new Map<string, ProcRecord>();

  constructor(
    private readonly reports: ProcReports,
    /** Called with every process's streams whenever a process is added or forgotten. */
    private readonly save: (streams: SavedStreams[]) => void = () => {},
  ) {}

  private saved(): void {
    const streams = [...this.byId.values()]
      .filter((r) => r.stdio > 0)
      .map((r) => ({ containerId: r.containerId, execId: r.execId, stdio: r.stdio, stderr: r.stderr, eofs: [...r.open] }));
    this.save(streams);
  }

  /**
   * A process about to start. `stderrEof`: the guest ends the stderr stream with an EOF
   * (ours does; a stock hyperstart sends EOF on the stdio stream only, so its exits must
   * not wait for one on stderr).
   */
  add(containerId: string, execId: string, terminal: boolean, stderrEof = true): ProcRecord {
    const stdio = this.nextSeq++;
    const stderr = terminal ? 0 : this.nextSeq++;
    const rec: ProcRecord = {
      containerId,
      execId,
      stdio,
      stderr,
      pid: 0,
      open: new Set(stderr && stderrEof ? [stdio, stderr] : [stdio]),
      waiters: [],
    };
    this.byId.set(key(containerId, execId), rec);
    this.bySeq.set(stdio, rec);
    if (stderr) this.bySeq.set(stderr, rec);
    this.saved();
    return rec;
  }

  /**
   * A process an earlier driver started (a runtime reattaching), with the stream
   * sequences that driver saved for it: its output is routed again and its exit waits
   * for their EOF. Without them its exit waits for no EOF and its output is refused.
   */
  adopt(containerId: string, execId: string, streams?: SavedStreams): ProcRecord {
    const rec: ProcRecord = { containerId, execId, stdio: streams?.stdio ?? 0, stderr: streams?.stderr ?? 0, pid: 0, open: new Set(streams?.eofs), waiters: [] };
    this.byId.set(key(containerId, execId), rec);
    if (rec.stdio) this.bySeq.set(rec.stdio, rec);
    if (rec.stderr) this.bySeq.set(rec.stderr, rec);
    return rec;
  }

  get(containerId: string, execId: string): ProcRecord | undefined {
    return this.byId.get(key(containerId, execId));
  }

  ofContainer(containerId: string): ProcRecord[] {
    return [...this.byId.values()].filter((r) => r.containerId === containerId);
  }

  /** Forgets a process (and its streams). */
  drop(rec: ProcRecord): void {
    clearTimeout(rec.grace);
    this.byId.delete(key(rec.containerId, rec.execId));
    if (rec.stdio) this.bySeq.delete(rec.stdio);
    if (rec.stderr) this.bySeq.delete(rec.stderr);
    this.saved();
  }

  /** Processes whose exit status is known but not yet reported (waiting for EOF). */
  finishing(): ProcRecord[] {
    return [...this.byId.values()].filter((r) => r.status !== undefined && !r.exit);
  }

  clear(): void {
    for (const rec of [...this.byId.values()]) this.drop(rec);
  }

  /** A tty frame from the guest; false when the sequence belongs to no process. */
  data(seq: number, payload: Uint8Array): boolean {
    const rec = this.bySeq.get(seq);
    if (!rec) return false;
    if (payload.byteLength === 0) {
      rec.open.delete(seq);
      this.settle(rec);
      return true;
    }
    this.reports.output(rec.containerId, rec.execId, seq === rec.stderr ? 'stderr' : 'stdout', payload);
    // Output still arriving after the exit: the EOF is on its way, keep waiting for it.
    if (rec.grace && !rec.exit) rec.grace.refresh();
    return true;
  }

  /** PROCESSASYNCEVENT "finished"; `unknown` when the status may not be the real one. */
  finished(containerId: string, execId: string, status: number, unknown = false): void {
    const rec = this.get(containerId, execId);
    if (!rec || rec.status !== undefined) return;
    rec.status = status;
    rec.statusUnknown = unknown;
    rec.finishedAt = new Date().toISOString();
    if (!this.settle(rec)) {
      rec.grace = setTimeout(() => this.complete(rec, status), EOF_GRACE_MS);
      rec.grace.unref();
    }
  }

  wait(rec: ProcRecord): Promise<ExitInfo> {
    if (rec.exit) return Promise.resolve(rec.exit);
    return new Promise((resolve) => rec.waiters.push(resolve));
  }

  /**
   * The connection is gone: pending waits complete with 255 (as runv's do). The records
   * stay open, so that a host that reconnects to a live guest still learns the real exits.
   */
  abandonWaits(): void {
    const exit = unknownExit();
    for (const rec of this.byId.values()) for (const w of rec.waiters.splice(0)) w(exit);
  }

  /** Processes of a container whose exit has not been reported yet. */
  live(containerId: string): ProcRecord[] {
    return this.ofContainer(containerId).filter((r) => !r.exit);
  }

  private settle(rec: ProcRecord): boolean {
    if (rec.status === undefined || rec.open.size > 0) return false;
    this.complete(rec, rec.status);
    return true;
  }

  private complete(rec: ProcRecord, status: number): void {
    if (rec.exit) return;
    clearTimeout(rec.grace);
    const at = rec.finishedAt ?? new Date().toISOString();
    rec.exit = rec.statusUnknown ? unknownExit(at) : { exitStatus: status, exitedAt: at };
    this.reports.exited(rec.containerId, rec.execId, rec.exit);
    for (const w of rec.waiters.splice(0)) w(rec.exit);
  }
}
