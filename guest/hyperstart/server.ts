// The guest end of the protocol: listens on the ctl and tty unix sockets (or, inside a
// VM, reads and writes the two virtio-serial ports), sends READY to each host that
// connects the ctl channel, credits every read with NEXT, and answers each command with
// exactly one ACK or ERROR, in order. A newer connection replaces an older one, so that a
// restarted host can reattach; exits that happen while no host is attached are kept and
// sent after the next READY.
import { createServer, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { claimSocketPath, GuestError, ownSocket, SerialPort, type CgroupDriver, type GuestLog, type OciRuntime, type OwnSocket } from '../common/index.js';
import { API_VERSION, Code, codeName, deprecatedCodes, MAX_REPLY_FRAME } from '../../protos/hyperstart/codes.js';
import {
  CtlDecoder,
  decodeJson,
  encodeCtl,
  encodeJson,
  encodeText,
  encodeTty,
  encodeUint32,
  FrameError,
  ttyChunks,
  TtyDecoder,
  type CtlFrame,
} from '../../protos/hyperstart/frame.js';
import type * as H from '../../protos/hyperstart/types.js';
import { Pod } from './pod.js';

export interface GuestOptions {
  /** The ctl and tty unix sockets to listen on, or with `serial` the two port devices. */
  ctl: string;
  tty: string;
  /** ctl and tty are virtio-serial port devices, not socket paths. */
  serial?: boolean;
  cgroups: CgroupDriver | undefined;
  reaper: boolean;
  log: GuestLog;
  /** Where STARTPOD's share is mounted and container rootfs are looked up. */
  sharedRoot: string;
  /** The guest is a whole VM: STARTPOD's hostname becomes the kernel's. */
  setHostname?: boolean;
  /**
   * Behave like a stock hyperstart (API 4244) as observed: refuse virtactors' extension
   * codes, send every ERROR with an empty payload and every ACK of NEWCONTAINER/EXECCMD
   * without a pid, plus the pod behaviours of PodOptions.stock.
   */
  stock?: boolean;
  /** The OCI runtime containers run through; undefined: not contained (a guest that is not root). */
  oci?: OciRuntime;
  stateDir: string;
}

const EMPTY = new Uint8Array();
/** What our guest serves beyond upstream hyperstart (the EXTENSIONS reply). */
const SERVED_EXTENSIONS = [Code.PAUSECONTAINER, Code.RESUMECONTAINER, Code.PSCONTAINER, Code.PREPARECONTAINER];
const EXTENSION_CODES = new Set<number>([Code.EXTENSIONS, ...SERVED_EXTENSIONS]);
/** Exit events kept for a host that is away; the oldest go first past this. */
const MAX_HELD_EVENTS = 4096;

/** A refusal sent as ERROR text; a GuestError's code leads it ("NotFound: ..."). */
const refusal = (err: unknown) => (err instanceof GuestError ? `${err.code}: ${err.message}` : (err as Error).message);

export class GuestServer {
  readonly pod: Pod;
  private ctl?: Duplex;
  private tty?: Duplex;
  private readonly ports: SerialPort[] = [];
  private readonly servers: Server[] = [];
  private readonly sockets: OwnSocket[] = [];
  private queue: Promise<void> = Promise.resolve();
  private destroyed = false;
  private readonly heldEvents: Uint8Array[] = [];
  /** Writers waiting for a tty connection or for it to drain. */
  private ttyWaiters: Array<() => void> = [];

  /** Called once DESTROYPOD has been answered and flushed. */
  onDestroyed: () => void = () => {};

  constructor(private readonly options: GuestOptions) {
    this.pod = new Pod(
      { stream: (seq, data) => this.stream(seq, data), event: (event) => this.event(event) },
      { cgroups: options.cgroups, reaper: options.reaper, log: options.log, sharedRoot: options.sharedRoot, setHostname: options.setHostname, stock: !!options.stock, stateDir: options.stateDir, ...(options.oci ? { oci: options.oci } : {}) },
    );
  }

  async listen(): Promise<void> {
    if (this.options.serial) {
      // One port each: READY goes out on the ctl port at once and after every host that left.
      this.ports.push(new SerialPort(this.options.ctl, (c) => this.acceptCtl(c)), new SerialPort(this.options.tty, (c) => this.acceptTty(c)));
      return;
    }
    await Promise.all([this.serve(this.options.ctl, (s) => this.acceptCtl(s)), this.serve(this.options.tty, (s) => this.acceptTty(s))]);
  }

  private async serve(path: string, accept: (s: Duplex) => void): Promise<void> {
    await claimSocketPath(path); // free, or a dead socket of an earlier guest; nothing else
    const server = createServer(accept);
    this.servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    this.sockets.push(ownSocket(path));
  }

  private acceptCtl(socket: Duplex): void {
    this.ctl?.destroy();
    this.ctl = socket;
    const decoder = new CtlDecoder();
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.ctl === socket) this.ctl = undefined;
    });
    socket.on('data', (chunk: Buffer) => {
      socket.write(encodeCtl(Code.NEXT, encodeUint32(chunk.byteLength)));
      let frames: CtlFrame[];
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        this.options.log.warn('bad ctl frame: closing the connection', { err });
        socket.destroy(); // the framing is lost; the host may connect again
        return;
      }
      for (const frame of frames) this.queue = this.queue.then(() => this.command(socket, frame));
    });
    socket.write(encodeCtl(Code.READY));
    for (const frame of this.heldEvents.splice(0)) socket.write(frame);
  }

  private acceptTty(socket: Duplex): void {
    this.tty?.destroy();
    this.tty = socket;
    const decoder = new TtyDecoder();
    socket.on('error', () => {});
    socket.on('drain', () => this.wakeWriters());
    socket.on('close', () => {
      if (this.tty === socket) this.tty = undefined;
      this.wakeWriters();
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const f of decoder.push(chunk)) {
          // Data for a stream nobody reads is answered with that stream's EOF ("goodbye").
          if (!this.pod.input(f.seq, f.payload) && f.payload.byteLength > 0) socket.write(encodeTty(f.seq));
        }
      } catch {
        socket.destroy();
      }
    });
    this.wakeWriters();
  }

  private wakeWriters(): void {
    for (const wake of this.ttyWaiters.splice(0)) wake();
  }

  /**
   * Process output onto the tty socket. It waits while no host is attached (the output
   * stays in the supervisor, which holds the process back past its buffer) and while the
   * socket is backed up.
   */
  private async stream(seq: number, data: Uint8Array): Promise<void> {
    for (;;) {
      const tty = this.tty;
      if (tty && !tty.destroyed && !tty.writableNeedDrain) {
        if (data.byteLength === 0) tty.write(encodeTty(seq));
        else for (const frame of ttyChunks(seq, data)) tty.write(frame);
        return;
      }
      if (this.destroyed && !tty) return; // nobody will ever read it
      await new Promise<void>((r) => this.ttyWaiters.push(r));
    }
  }

  private event(event: H.ProcessAsyncEvent): void {
    const frame = encodeCtl(Code.PROCESSASYNCEVENT, encodeJson(event));
    if (this.ctl && !this.ctl.destroyed) {
      this.ctl.write(frame);
      return;
    }
    this.heldEvents.push(frame);
    if (this.heldEvents.length > MAX_HELD_EVENTS) this.heldEvents.shift();
  }

  private async command(socket: Duplex, frame: CtlFrame): Promise<void> {
    let reply: Uint8Array;
    let ok = false;
    try {
      reply = encodeCtl(Code.ACK, await this.handle(frame), MAX_REPLY_FRAME);
      ok = true;
    } catch (err) {
      const text = err instanceof FrameError ? `${codeName(frame.code)} reply too large: ${err.message}` : refusal(err);
      if (this.options.stock) this.options.log.debug('refused', { command: codeName(frame.code), reason: text });
      // A stock hyperstart never says why: its ERROR frames are empty.
      reply = this.options.stock ? encodeCtl(Code.ERROR) : encodeCtl(Code.ERROR, encodeText(text.slice(0, 4000)));
    }
    if (socket.destroyed) return;
    socket.write(reply);
    // DESTROYPOD is the host's last command: flush the answer, then power off.
    if (ok && frame.code === Code.DESTROYPOD) socket.end(() => this.onDestroyed());
  }

  private async handle({ code, payload }: CtlFrame): Promise<Uint8Array> {
    if (this.destroyed) throw new GuestError('FailedPrecondition', 'the pod is destroyed');
    const body = <T>(): T => {
      try {
        return decodeJson<T>(payload);
      } catch (err) {
        throw new GuestError('InvalidArgument', `invalid ${codeName(code)} payload: ${(err as Error).message}`);
      }
    };
    if (this.options.stock && EXTENSION_CODES.has(code)) throw new Error(`unknown command ${codeName(code)}`);
    // A stock hyperstart's ACK of a started process carries nothing (no pid).
    const started = (reply: H.StartedReply) => (this.options.stock ? EMPTY : encodeJson(reply));
    switch (code) {
      case Code.VERSION:
        return encodeUint32(API_VERSION);
      case Code.PING:
      case Code.READY:
      case Code.ONLINECPUMEM: // CPUs and memory are the host's: nothing was hot-plugged.
        return EMPTY;
      case Code.STARTPOD:
        await this.pod.start(body<H.Pod>());
        return EMPTY;
      case Code.EXTENSIONS:
        return encodeJson(SERVED_EXTENSIONS);
      case Code.PREPARECONTAINER:
        await this.pod.prepare(body<H.Container>());
        return EMPTY;
      case Code.NEWCONTAINER:
        return started(await this.pod.newContainer(body<H.Container>()));
      case Code.EXECCMD:
        return started(await this.pod.exec(body<H.ExecCommand>()));
      case Code.KILLCONTAINER:
        await this.pod.kill(body<H.KillCommand>());
        return EMPTY;
      case Code.SIGNALPROCESS:
        await this.pod.signal(body<H.SignalCommand>());
        return EMPTY;
      case Code.WINSIZE:
        await this.pod.winsize(body<H.WindowSizeMessage>());
        return EMPTY;
      case Code.REMOVECONTAINER:
        await this.pod.remove(body<H.RemoveCommand>());
        return EMPTY;
      case Code.PAUSECONTAINER:
        await this.pod.pause(body<H.RemoveCommand>());
        return EMPTY;
      case Code.RESUMECONTAINER:
        await this.pod.resume(body<H.RemoveCommand>());
        return EMPTY;
      case Code.PSCONTAINER:
        return await this.pod.list(body<H.PsCommand>());
      case Code.DESTROYPOD:
        this.destroyed = true;
        await this.pod.destroy();
        return EMPTY;
      case Code.WRITEFILE:
      case Code.READFILE:
      case Code.SETUPINTERFACE:
      case Code.SETUPROUTE:
      case Code.DELETEINTERFACE:
        throw new Error(`${codeName(code)} is unsupported by this guest`);
      default:
        if (deprecatedCodes.has(code)) throw new Error(`${codeName(code)} is deprecated`);
        throw new Error(`unknown command ${codeName(code)}`);
    }
  }

  /** Ends every process and closes the sockets (SIGTERM). */
  async close(): Promise<void> {
    this.destroyed = true;
    this.wakeWriters();
    await this.pod.destroy();
    this.ctl?.destroy();
    this.tty?.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    for (const port of this.ports) port.close();
    for (const socket of this.sockets.splice(0)) socket.remove();
  }
}
