// yamux, the stream multiplexer kata 1.x ran over its one virtio-serial port (hashicorp's
// spec): many ordered byte streams over one connection, each with its own flow-control
// window. The client opens odd stream ids, the server even ones.
//
//   header (12 bytes, big-endian): u8 version 0, u8 type, u16 flags, u32 stream id, u32 length
//   Data: length = payload bytes that follow   WindowUpdate: length = window delta
//   Ping: length = opaque value (stream 0)     GoAway: length = reason (stream 0)
//   flags: SYN opens a stream, ACK accepts it, FIN half-closes, RST resets
//
// Written here rather than taken from npm: the maintained packages are either bound to
// libp2p's connection interfaces (@chainsafe/libp2p-yamux) or lose data when a frame
// arrives split over reads, which a serial port does all the time (yamux-js 0.2).
// Node streams only; nothing of the project is imported.
import { Duplex } from 'node:stream';

export const HEADER_SIZE = 12;
const VERSION = 0;
export const Type = { Data: 0, WindowUpdate: 1, Ping: 2, GoAway: 3 } as const;
export const Flag = { SYN: 1, ACK: 2, FIN: 4, RST: 8 } as const;
export const GoAway = { normal: 0, protocolError: 1, internalError: 2 } as const;
/** Every stream starts with this receive window (hashicorp's initialStreamWindow). */
export const INITIAL_WINDOW = 256 * 1024;
/** The largest Data frame sent at once. */
const MAX_DATA_FRAME = 64 * 1024;

export interface Header {
  type: number;
  flags: number;
  streamId: number;
  length: number;
}

export function encodeHeader(h: Header): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  b.writeUInt8(VERSION, 0);
  b.writeUInt8(h.type, 1);
  b.writeUInt16BE(h.flags, 2);
  b.writeUInt32BE(h.streamId, 4);
  b.writeUInt32BE(h.length, 8);
  return b;
}

export class YamuxError extends Error {
  override readonly name = 'YamuxError';
}

export interface SessionOptions {
  /** The side that opens odd stream ids (kata's host side). */
  client: boolean;
  /** Called for every stream the peer opens; without it, such streams are reset. */
  onStream?: (stream: YamuxStream) => void;
}

/** One yamux session over a byte transport (a socket, a serial port). */
export class Session {
  private readonly streams = new Map<number, YamuxStream>();
  private nextId: number;
  private buffered: Buffer = Buffer.alloc(0);
  private closed = false;
  private readonly pings = new Map<number, () => void>();
  private pingId = 0;
  private closeListeners: ((err?: Error) => void)[] = [];
  /** Frames of this tick, written together at its end (see send). */
  private outgoing: Buffer[] = [];
  private flushScheduled = false;

  constructor(
    private readonly transport: Duplex,
    private readonly options: SessionOptions,
  ) {
    this.nextId = options.client ? 1 : 2;
    transport.on('data', (chunk: Buffer) => this.receive(chunk));
    transport.on('end', () => this.close());
    transport.on('close', () => this.close());
    transport.on('error', (err: Error) => this.close(err));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  onClose(listener: (err?: Error) => void): void {
    if (this.closed) listener();
    else this.closeListeners.push(listener);
  }

  /** Opens a stream to the peer (SYN goes out with the first window update). */
  open(): YamuxStream {
    if (this.closed) throw new YamuxError('the yamux session is closed');
    const id = this.nextId;
    this.nextId += 2;
    const stream = new YamuxStream(this, id, 'opening');
    this.streams.set(id, stream);
    this.send({ type: Type.WindowUpdate, flags: Flag.SYN, streamId: id, length: 0 });
    return stream;
  }

  /** Round trip of a Ping frame; rejects when the session closes first or after timeoutMs. */
  ping(timeoutMs: number): Promise<void> {
    if (this.closed) return Promise.reject(new YamuxError('the yamux session is closed'));
    const id = this.pingId++ >>> 0;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pings.delete(id);
        reject(new YamuxError(`no yamux ping answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pings.set(id, () => {
        clearTimeout(timer);
        resolve();
      });
      this.onClose(() => {
        if (!this.pings.delete(id)) return;
        clearTimeout(timer);
        reject(new YamuxError('the yamux session closed'));
      });
      this.send({ type: Type.Ping, flags: Flag.SYN, streamId: 0, length: id });
    });
  }

  /** Ends every stream, tells the peer (GoAway) and ends the transport. */
  close(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.transport.destroyed && this.transport.writable) {
      this.flush();
      this.transport.write(encodeHeader({ type: Type.GoAway, flags: 0, streamId: 0, length: err ? GoAway.protocolError : GoAway.normal }));
      this.transport.end();
    }
    for (const stream of this.streams.values()) stream.destroy(new YamuxError('the yamux session closed'));
    this.streams.clear();
    for (const listener of this.closeListeners.splice(0)) listener(err);
  }

  /**
   * @internal Frames are queued and leave in one write when the tick ends: one gRPC reply
   * is a HEADERS, a DATA and a trailing HEADERS frame, plus window updates, and over a
   * virtio-serial port each write is a syscall on both sides and a wake-up of a guest
   * that TCG runs slowly.
   */
  send(h: Header, payload?: Buffer): void {
    if (this.closed || this.transport.destroyed || !this.transport.writable) return;
    this.outgoing.push(encodeHeader(h));
    if (payload) this.outgoing.push(payload);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    process.nextTick(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    const frames = this.outgoing;
    if (frames.length === 0) return;
    this.outgoing = [];
    if (this.transport.destroyed || !this.transport.writable) return;
    this.transport.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames));
  }

  /** @internal */ forget(id: number): void {
    this.streams.delete(id);
  }

  private receive(chunk: Buffer): void {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    let off = 0;
    while (!this.closed && this.buffered.length - off >= HEADER_SIZE) {
      const b = this.buffered;
      const version = b.readUInt8(off);
      const h: Header = { type: b.readUInt8(off + 1), flags: b.readUInt16BE(off + 2), streamId: b.readUInt32BE(off + 4), length: b.readUInt32BE(off + 8) };
      if (version !== VERSION) return this.protocolError(`yamux version ${version} is not 0`);
      const payloadSize = h.type === Type.Data ? h.length : 0;
      if (b.length - off < HEADER_SIZE + payloadSize) break; // the rest of the frame is still on its way
      const payload = b.subarray(off + HEADER_SIZE, off + HEADER_SIZE + payloadSize);
      off += HEADER_SIZE + payloadSize;
      this.frame(h, payload);
    }
    // Copy the tail: the rest of the chunk may be large and is no longer needed.
    this.buffered = off >= this.buffered.length ? Buffer.alloc(0) : Buffer.from(this.buffered.subarray(off));
  }

  private protocolError(message: string): void {
    this.close(new YamuxError(message));
  }

  private frame(h: Header, payload: Buffer): void {
    switch (h.type) {
      case Type.Ping:
        if (h.flags & Flag.SYN) this.send({ type: Type.Ping, flags: Flag.ACK, streamId: 0, length: h.length });
        else if (h.flags & Flag.ACK) {
          const answered = this.pings.get(h.length);
          this.pings.delete(h.length);
          answered?.();
        }
        return;
      case Type.GoAway:
        // The peer will open no more streams and is closing; what is open ends with it.
        this.close(h.length === GoAway.normal ? undefined : new YamuxError(`the peer went away (reason ${h.length})`));
        return;
      case Type.Data:
      case Type.WindowUpdate:
        return this.streamFrame(h, payload);
      default:
        return this.protocolError(`unknown yamux frame type ${h.type}`);
    }
  }

  private streamFrame(h: Header, payload: Buffer): void {
    let stream = this.streams.get(h.streamId);
    if (h.flags & Flag.SYN) {
      if (stream) return this.protocolError(`stream ${h.streamId} opened twice`);
      if (!this.options.onStream || h.streamId === 0) {
        this.send({ type: Type.WindowUpdate, flags: Flag.RST, streamId: h.streamId, length: 0 });
        return;
      }
      stream = new YamuxStream(this, h.streamId, 'open');
      this.streams.set(h.streamId, stream);
      this.send({ type: Type.WindowUpdate, flags: Flag.ACK, streamId: h.streamId, length: 0 });
      this.options.onStream(stream);
    }
    // Frames for a stream already forgotten (reset, or closed both ways) are dropped.
    stream?.frame(h, payload);
  }
}

type StreamState = 'opening' | 'open' | 'closed';

/** One stream of a session: a Duplex whose writes respect the peer's window. */
export class YamuxStream extends Duplex {
  private state: StreamState;
  private sendWindow = INITIAL_WINDOW;
  /** What the peer may still send before we grant more. */
  private recvWindow = INITIAL_WINDOW;
  private pendingWrite: { chunk: Buffer; callback: (err?: Error | null) => void } | undefined;
  private localFin = false;
  private remoteFin = false;

  constructor(
    private readonly session: Session,
    readonly id: number,
    state: StreamState,
  ) {
    super({ allowHalfOpen: true });
    this.state = state;
  }

  /** @internal */ frame(h: Header, payload: Buffer): void {
    if (h.flags & Flag.ACK && this.state === 'opening') this.state = 'open';
    if (h.flags & Flag.RST) {
      this.state = 'closed';
      this.session.forget(this.id);
      this.destroy(Object.assign(new YamuxError(`stream ${this.id} was reset by the peer`), { code: 'ECONNRESET' }));
      return;
    }
    if (h.type === Type.WindowUpdate && h.length > 0) {
      this.sendWindow += h.length;
      this.flushPending();
    }
    if (h.type === Type.Data && payload.length > 0) {
      if (payload.length > this.recvWindow) {
        this.reset();
        return;
      }
      this.recvWindow -= payload.length;
      if (!this.remoteFin) this.push(Buffer.from(payload));
      this.grant();
    }
    if (h.flags & Flag.FIN && !this.remoteFin) {
      this.remoteFin = true;
      this.push(null);
      this.maybeForget();
    }
  }

  /** Grants the peer more window once half of it has been consumed (as hashicorp does). */
  private grant(): void {
    if (this.state === 'closed' || this.remoteFin) return;
    const delta = INITIAL_WINDOW - this.readableLength - this.recvWindow;
    if (delta < INITIAL_WINDOW / 2) return;
    this.recvWindow += delta;
    this.session.send({ type: Type.WindowUpdate, flags: 0, streamId: this.id, length: delta });
  }

  override _read(): void {
    this.grant();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.state === 'closed' || this.localFin) {
      callback(new YamuxError(`stream ${this.id} is closed`));
      return;
    }
    this.pendingWrite = { chunk, callback };
    this.flushPending();
  }

  private flushPending(): void {
    const pending = this.pendingWrite;
    if (!pending) return;
    while (pending.chunk.length > 0 && this.sendWindow > 0) {
      if (this.session.isClosed) break;
      const n = Math.min(pending.chunk.length, this.sendWindow, MAX_DATA_FRAME);
      this.session.send({ type: Type.Data, flags: 0, streamId: this.id, length: n }, pending.chunk.subarray(0, n));
      this.sendWindow -= n;
      pending.chunk = pending.chunk.subarray(n);
    }
    if (pending.chunk.length === 0) {
      this.pendingWrite = undefined;
      pending.callback();
    } else if (this.session.isClosed) {
      this.pendingWrite = undefined;
      pending.callback(new YamuxError('the yamux session closed'));
    }
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (!this.localFin && this.state !== 'closed') {
      this.localFin = true;
      this.session.send({ type: Type.WindowUpdate, flags: Flag.FIN, streamId: this.id, length: 0 });
      this.maybeForget();
    }
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // Destroyed before both sides finished: the peer must drop the stream too.
    if (this.state !== 'closed' && !(this.localFin && this.remoteFin)) this.reset();
    const pending = this.pendingWrite;
    this.pendingWrite = undefined;
    pending?.callback(err ?? new YamuxError(`stream ${this.id} was destroyed`));
    callback(err);
  }

  private reset(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.session.send({ type: Type.WindowUpdate, flags: Flag.RST, streamId: this.id, length: 0 });
    this.session.forget(this.id);
    if (!this.destroyed) this.destroy();
  }

  private maybeForget(): void {
    if (this.localFin && this.remoteFin) {
      this.state = 'closed';
      this.session.forget(this.id);
    }
  }
}
