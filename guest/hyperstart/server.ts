// The guest end of the protocol: listens on the ctl and tty unix sockets, sends READY
// to each host that connects the ctl socket, credits every read with NEXT, and answers
// each command with exactly one ACK or ERROR, in order. A newer connection replaces an
// older one, so that a restarted host can reattach.
import { createServer, type Server, type Socket } from 'node:net';
import { unlinkSync } from 'node:fs';
import { API_VERSION, Code, codeName, deprecatedCodes } from '../../protos/hyperstart/codes.js';
import { CtlDecoder, decodeJson, encodeCtl, encodeJson, encodeText, encodeTty, encodeUint32, ttyChunks, TtyDecoder, type CtlFrame } from '../../protos/hyperstart/frame.js';
import type * as H from '../../protos/hyperstart/types.js';
import { CommandError, Pod } from './pod.js';

export interface GuestPaths {
  ctl: string;
  tty: string;
}

type Reply = { ack: Uint8Array } | { error: string };
const ACK: Reply = { ack: new Uint8Array() };

export class GuestServer {
  readonly pod: Pod;
  private ctl?: Socket;
  private tty?: Socket;
  private readonly servers: Server[] = [];
  private queue: Promise<void> = Promise.resolve();
  private destroyed = false;
  /** The tty socket whose backlog holds the processes' output back. */
  private throttled?: Socket;

  /** Called once DESTROYPOD has been answered and flushed. */
  onDestroyed: () => void = () => {};

  constructor(private readonly paths: GuestPaths) {
    this.pod = new Pod({
      stream: (seq, data) => this.stream(seq, data),
      event: (event) => this.ctl?.write(encodeCtl(Code.PROCESSASYNCEVENT, encodeJson(event))),
    });
  }

  async listen(): Promise<void> {
    await Promise.all([
      this.serve(this.paths.ctl, (s) => this.acceptCtl(s)),
      this.serve(this.paths.tty, (s) => this.acceptTty(s)),
    ]);
  }

  private serve(path: string, accept: (s: Socket) => void): Promise<void> {
    try {
      unlinkSync(path); // a stale socket from an earlier guest
    } catch {
      /* none */
    }
    const server = createServer(accept);
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
  }

  private acceptCtl(socket: Socket): void {
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
      } catch {
        socket.destroy(); // the framing is lost; the host may connect again
        return;
      }
      for (const frame of frames) {
        this.queue = this.queue.then(() => this.command(socket, frame));
      }
    });
    socket.write(encodeCtl(Code.READY));
  }

  private acceptTty(socket: Socket): void {
    this.tty?.destroy();
    this.tty = socket;
    const decoder = new TtyDecoder();
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.tty === socket) this.tty = undefined;
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const f of decoder.push(chunk)) {
          // Data for a stream nobody reads is answered with that stream's EOF ("goodbye").
          if (!this.pod.stdin(f.seq, f.payload) && f.payload.byteLength > 0) socket.write(encodeTty(f.seq));
        }
      } catch {
        socket.destroy();
      }
    });
  }

  /**
   * Output of a process; dropped while no host is attached to the tty socket. When the
   * socket backs up, every process's output is held until it drains.
   */
  private stream(seq: number, data: Uint8Array): void {
    const tty = this.tty;
    if (!tty || tty.destroyed) return;
    let flowing = true;
    if (data.byteLength === 0) flowing = tty.write(encodeTty(seq));
    else for (const frame of ttyChunks(seq, data)) flowing = tty.write(frame);
    if (!flowing && !this.throttled) {
      this.throttled = tty;
      this.pod.setOutputFlow(false);
      tty.once('drain', () => this.unthrottle(tty));
      tty.once('close', () => this.unthrottle(tty));
    }
  }

  private unthrottle(tty: Socket): void {
    if (this.throttled !== tty) return;
    this.throttled = undefined;
    this.pod.setOutputFlow(true);
  }

  private async command(socket: Socket, frame: CtlFrame): Promise<void> {
    let reply: Reply;
    try {
      reply = await this.handle(frame);
    } catch (err) {
      reply = { error: err instanceof CommandError ? err.message : `${codeName(frame.code)} failed: ${(err as Error).message}` };
    }
    if (socket.destroyed) return;
    if ('ack' in reply) socket.write(encodeCtl(Code.ACK, reply.ack));
    else socket.write(encodeCtl(Code.ERROR, encodeText(reply.error)));
    if (frame.code === Code.DESTROYPOD && 'ack' in reply) {
      // The host's last command: flush the answer, then power off.
      this.destroyed = true;
      socket.end(() => this.onDestroyed());
    }
  }

  private async handle({ code, payload }: CtlFrame): Promise<Reply> {
    if (this.destroyed) throw new CommandError('the pod is destroyed');
    const body = <T>() => {
      try {
        return decodeJson<T>(payload);
      } catch (err) {
        throw new CommandError(`invalid ${codeName(code)} payload: ${(err as Error).message}`);
      }
    };
    switch (code) {
      case Code.VERSION:
        return { ack: encodeUint32(API_VERSION) };
      case Code.PING:
      case Code.READY:
      case Code.ONLINECPUMEM: // CPUs and memory are the host's; nothing to online.
        return ACK;
      case Code.STARTPOD:
        this.pod.start(body<H.Pod>());
        return ACK;
      case Code.NEWCONTAINER:
        return { ack: encodeJson(await this.pod.newContainer(body<H.Container>())) };
      case Code.EXECCMD:
        return { ack: encodeJson(await this.pod.exec(body<H.ExecCommand>())) };
      case Code.KILLCONTAINER:
        this.pod.kill(body<H.KillCommand>());
        return ACK;
      case Code.SIGNALPROCESS:
        this.pod.signal(body<H.SignalCommand>());
        return ACK;
      case Code.WINSIZE:
        this.pod.winsize(body<H.WindowSizeMessage>());
        return ACK;
      case Code.REMOVECONTAINER:
        this.pod.remove(body<H.RemoveCommand>());
        return ACK;
      case Code.PAUSECONTAINER:
        await this.pod.pause(body<H.RemoveCommand>());
        return ACK;
      case Code.RESUMECONTAINER:
        await this.pod.resume(body<H.RemoveCommand>());
        return ACK;
      case Code.DESTROYPOD:
        await this.pod.destroy();
        return ACK;
      case Code.WRITEFILE:
      case Code.READFILE:
      case Code.SETUPINTERFACE:
      case Code.SETUPROUTE:
      case Code.DELETEINTERFACE:
        throw new CommandError(`${codeName(code)} is unsupported by this guest`);
      default:
        if (deprecatedCodes.has(code)) throw new CommandError(`${codeName(code)} is deprecated`);
        throw new CommandError(`unknown command ${codeName(code)}`);
    }
  }

  /** Ends every process and closes the sockets (SIGTERM). */
  async close(): Promise<void> {
    this.destroyed = true;
    await this.pod.destroy();
    this.ctl?.destroy();
    this.tty?.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    for (const path of [this.paths.ctl, this.paths.tty]) {
      try {
        unlinkSync(path);
      } catch {
        /* already gone */
      }
    }
  }
}
