// The host end of hyperstart's two unix sockets (reference §5.4): dialing, READY, one
// transaction at a time with FIFO reply matching and a deadline per call, NEXT flow
// control on the ctl channel, and a plain frame pipe for the tty channel.
import { createConnection, type Socket } from 'node:net';
import { Code, codeName, MAX_REPLY_FRAME, NEXT_WINDOW } from '../../protos/hyperstart/codes.js';
import { CtlDecoder, decodeText, decodeUint32, encodeCtl, encodeTty, ttyChunks, TtyDecoder, type CtlFrame } from '../../protos/hyperstart/frame.js';
import { deadlineExceeded, unavailable, type VcError } from '../../bus/errors.js';
import { abortReason, withinDeadline } from './calls.js';

/** The guest answered a command with ERROR. */
export class GuestError extends Error {
  override readonly name = 'GuestError';
  constructor(
    readonly command: string,
    readonly detail: string,
  ) {
    super(`hyperstart guest refused ${command}${detail ? `: ${detail}` : ''}`);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** How often a guest that is still starting is probed: every few ms at first, then backing off to 50 ms. */
const DIAL_PROBE_MS = 2;
const DIAL_FAST_MS = 500;
const DIAL_MAX_WAIT_MS = 50;

/**
 * Connects to a unix socket, retrying while the guest is not listening yet. A guest on
 * the namespace backend listens some 40 ms after it starts: probing every 2 ms finds it
 * within a few ms (a doubling backoff from the start would find it up to ~30 ms late);
 * a slower guest (a VM) is probed less often after the first half second.
 */
export async function dial(path: string, deadline: number): Promise<Socket> {
  const started = performance.now();
  let wait = DIAL_PROBE_MS;
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = createConnection(path);
        s.once('connect', () => {
          s.off('error', reject);
          resolve(s);
        });
        s.once('error', reject);
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const retry = code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EAGAIN';
      if (!retry || performance.now() + wait > deadline) throw err;
      await sleep(wait);
      if (performance.now() - started > DIAL_FAST_MS) wait = Math.min(wait * 2, DIAL_MAX_WAIT_MS);
    }
  }
}

interface Transaction {
  command: string;
  settled: boolean;
  /** Resolves once settled, whatever the outcome; holds the channel until then. */
  done: Promise<void>;
  settle(result: { ok: Uint8Array } | { err: Error }): void;
}

export interface CtlHandlers {
  /** A guest→host frame that is not a reply (PROCESSASYNCEVENT). */
  event(frame: CtlFrame): void;
  /** The channel closed without `close()` being called. */
  lost(reason: string): void;
}

export class CtlChannel {
  /** Replies may carry data (a process list), so they get a larger limit than commands. */
  private readonly decoder = new CtlDecoder(MAX_REPLY_FRAME);
  /** Commands written (or being written) whose ACK/ERROR has not arrived, oldest first. */
  private readonly awaiting: Transaction[] = [];
  private tail: Promise<void> = Promise.resolve();
  private written = 0;
  private acknowledged = 0;
  private wakers = new Set<() => void>();
  private closedReason?: string;
  private readyResolve?: () => void;
  private readonly readySeen: Promise<void>;
  private intentional = false;

  constructor(
    private readonly socket: Socket,
    private readonly handlers: CtlHandlers,
  ) {
    this.readySeen = new Promise((r) => (this.readyResolve = r));
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (err) => this.shut(`ctl socket error: ${err.message}`));
    socket.on('close', () => this.shut('the guest closed the ctl connection'));
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Resolves on the guest's READY; fails when the connection ends or the deadline passes. */
  async ready(timeoutMs: number, what: string, expired: () => VcError): Promise<void> {
    const closedError = () => unavailable(`${what}: ${this.closedReason} before sending READY`);
    if (this.closedReason) throw closedError();
    let off: (() => void) | undefined;
    try {
      await withinDeadline(
        { what: `${what}: waiting for READY`, timeoutMs, expired },
        () =>
          new Promise<void>((resolve, reject) => {
            void this.readySeen.then(resolve);
            off = this.onWake(() => this.closedReason && reject(closedError()));
          }),
      );
    } finally {
      off?.();
    }
  }

  /**
   * Sends one command and resolves with the ACK payload; ERROR rejects with GuestError.
   * The call ends without an answer when `timeoutMs` passes or `abort` aborts: a command
   * still queued is never written; a reply that arrives later is consumed and dropped.
   */
  call(code: number, payload: Uint8Array | undefined, timeoutMs: number, abort?: AbortSignal): Promise<Uint8Array> {
    const command = codeName(code);
    if (this.closedReason) return Promise.reject(unavailable(`cannot send ${command}: ${this.closedReason}`));
    if (abort?.aborted) return Promise.reject(abortReason(abort, command));
    const frame = encodeCtl(code, payload);
    return new Promise<Uint8Array>((resolve, reject) => {
      let markDone!: () => void;
      const tx: Transaction = {
        command,
        settled: false,
        done: new Promise<void>((r) => (markDone = r)),
        settle: (result) => {
          if (tx.settled) return;
          tx.settled = true;
          clearTimeout(timer);
          abort?.removeEventListener('abort', onAbort);
          markDone();
          this.wake();
          if ('ok' in result) resolve(result.ok);
          else reject(result.err);
        },
      };
      const timer = setTimeout(
        () => tx.settle({ err: deadlineExceeded(`hyperstart guest did not answer ${command} within ${timeoutMs} ms`) }),
        Math.max(0, timeoutMs),
      );
      const onAbort = () => tx.settle({ err: abortReason(abort!, command) });
      abort?.addEventListener('abort', onAbort, { once: true });
      this.tail = this.tail
        .then(() => this.transact(tx, frame))
        .catch((err: unknown) => tx.settle({ err: err instanceof Error ? err : new Error(String(err)) }));
    });
  }

  /** Writes the frame in NEXT-sized slices, then holds the channel until the reply or deadline. */
  private async transact(tx: Transaction, frame: Uint8Array): Promise<void> {
    if (tx.settled) return;
    this.awaiting.push(tx);
    for (let at = 0; at < frame.byteLength; ) {
      await this.until(() => tx.settled || this.closed || this.acknowledged >= this.written);
      if (this.closed) return;
      if (tx.settled) {
        if (at === 0) this.awaiting.splice(this.awaiting.indexOf(tx), 1);
        // Half a frame on the wire cannot be taken back: the stream is out of step.
        else this.destroy(`${tx.command} timed out half-written; the ctl stream is out of sync`);
        return;
      }
      const slice = frame.subarray(at, at + NEXT_WINDOW);
      this.written += slice.byteLength;
      at += slice.byteLength;
      this.socket.write(slice);
    }
    await tx.done;
  }

  private receive(chunk: Buffer): void {
    let frames: CtlFrame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.destroy(`the guest sent a bad ctl frame: ${(err as Error).message}`);
      return;
    }
    for (const frame of frames) {
      switch (frame.code) {
        case Code.READY:
          this.readyResolve?.();
          break;
        case Code.NEXT:
          try {
            this.acknowledged += decodeUint32(frame.payload);
          } catch (err) {
            this.destroy(`the guest sent a bad NEXT: ${(err as Error).message}`);
            return;
          }
          this.wake();
          break;
        case Code.ACK:
        case Code.ERROR: {
          // A reply for a command that already timed out is consumed here and dropped.
          const tx = this.awaiting.shift();
          if (!tx) {
            this.destroy(`the guest sent ${codeName(frame.code)} with no command outstanding`);
            return;
          }
          if (frame.code === Code.ACK) tx.settle({ ok: frame.payload });
          else tx.settle({ err: new GuestError(tx.command, errorText(frame.payload)) });
          break;
        }
        default:
          this.handlers.event(frame);
      }
    }
  }

  private onWake(fn: () => void): () => void {
    this.wakers.add(fn);
    return () => this.wakers.delete(fn);
  }

  private wake(): void {
    for (const fn of [...this.wakers]) fn();
  }

  private async until(condition: () => boolean): Promise<void> {
    while (!condition()) {
      await new Promise<void>((resolve) => {
        const off = this.onWake(() => {
          off();
          resolve();
        });
      });
    }
  }

  private shut(reason: string): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    for (const tx of this.awaiting.splice(0)) tx.settle({ err: unavailable(`${tx.command} got no answer: ${reason}`) });
    this.wake();
    this.wakers.clear();
    if (!this.intentional) this.handlers.lost(reason);
  }

  private destroy(reason: string): void {
    this.shut(reason);
    this.socket.destroy();
  }

  /** Closes the connection on purpose (no `lost` notice). */
  close(reason = 'the host closed the ctl connection'): void {
    this.intentional = true;
    this.destroy(reason);
  }

  /** From now on an end of the connection is expected (the guest powers off after DESTROYPOD). */
  expectClose(): void {
    this.intentional = true;
  }
}

/** ERROR payloads are free text (upstream) or a JSON string; both are shown as text. */
function errorText(payload: Uint8Array): string {
  const text = decodeText(payload).replace(/\0+$/, '').trim();
  if (text.startsWith('"')) {
    try {
      return String(JSON.parse(text));
    } catch {
      /* plain text that starts with a quote */
    }
  }
  return text;
}

export interface TtyHandlers {
  data(seq: number, payload: Uint8Array): void;
  lost(reason: string): void;
}

/** The tty channel: sequence-numbered stream frames both ways; empty payload = EOF. */
export class TtyChannel {
  private readonly decoder = new TtyDecoder();
  private closedReason?: string;
  private intentional = false;

  constructor(
    private readonly socket: Socket,
    private readonly handlers: TtyHandlers,
  ) {
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const f of this.decoder.push(chunk)) handlers.data(f.seq, f.payload);
      } catch (err) {
        this.shut(`the guest sent a bad tty frame: ${(err as Error).message}`);
        socket.destroy();
      }
    });
    socket.on('error', (err) => this.shut(`tty socket error: ${err.message}`));
    socket.on('close', () => this.shut('the guest closed the tty connection'));
  }

  write(seq: number, data: Uint8Array): void {
    if (this.closedReason) throw unavailable(`cannot write stream ${seq}: ${this.closedReason}`);
    for (const frame of ttyChunks(seq, data)) this.socket.write(frame);
  }

  eof(seq: number): void {
    if (!this.closedReason) this.socket.write(encodeTty(seq));
  }

  private shut(reason: string): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    if (!this.intentional) this.handlers.lost(reason);
  }

  close(): void {
    this.intentional = true;
    this.socket.destroy();
  }

  expectClose(): void {
    this.intentional = true;
  }
}
