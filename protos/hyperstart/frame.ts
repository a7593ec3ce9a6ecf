// Frame codec for the two hyperstart channels (reference §5.2). Pure: bytes in, frames
// out. All integers are big-endian; a frame's length field counts its own header.
//   ctl: u32 code, u32 length, payload
//   tty: u64 stream seq, u32 length, payload (an empty payload is EOF of that stream)
import { CTL_HEADER_SIZE, MAX_CTL_FRAME, MAX_TTY_FRAME, TTY_HEADER_SIZE } from './codes.js';

export interface CtlFrame {
  code: number;
  payload: Uint8Array;
}

export interface TtyFrame {
  /** Stream sequence number; kept below 2^53 so that it is a plain number. */
  seq: number;
  /** Empty means EOF (or close) of the stream. */
  payload: Uint8Array;
}

/** A frame that cannot be encoded or decoded; the stream it came from is unusable. */
export class FrameError extends Error {
  override readonly name = 'FrameError';
  constructor(
    readonly kind: 'oversized' | 'malformed',
    message: string,
  ) {
    super(message);
  }
}

const empty = new Uint8Array(0);
const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

export function encodeCtl(code: number, payload: Uint8Array = empty, max = MAX_CTL_FRAME): Uint8Array {
  const length = CTL_HEADER_SIZE + payload.byteLength;
  if (length > max) throw new FrameError('oversized', `ctl frame of ${length} bytes exceeds the ${max}-byte limit`);
  if (!Number.isInteger(code) || code < 0 || code > 0xffff_ffff) throw new FrameError('malformed', `ctl code ${code} is not a uint32`);
  const out = new Uint8Array(length);
  const v = view(out);
  v.setUint32(0, code);
  v.setUint32(4, length);
  out.set(payload, CTL_HEADER_SIZE);
  return out;
}

export function encodeTty(seq: number, payload: Uint8Array = empty, max = MAX_TTY_FRAME): Uint8Array {
  const length = TTY_HEADER_SIZE + payload.byteLength;
  if (length > max) throw new FrameError('oversized', `tty frame of ${length} bytes exceeds the ${max}-byte limit`);
  if (!Number.isSafeInteger(seq) || seq < 0) throw new FrameError('malformed', `stream seq ${seq} is not a uint64 below 2^53`);
  const out = new Uint8Array(length);
  const v = view(out);
  v.setBigUint64(0, BigInt(seq));
  v.setUint32(8, length);
  out.set(payload, TTY_HEADER_SIZE);
  return out;
}

/** Splits data into tty frames of at most `max` bytes each (no frame for empty data). */
export function* ttyChunks(seq: number, data: Uint8Array, max = MAX_TTY_FRAME): Generator<Uint8Array> {
  const room = max - TTY_HEADER_SIZE;
  for (let off = 0; off < data.byteLength; off += room) yield encodeTty(seq, data.subarray(off, off + room), max);
}

/**
 * Incremental decoder: feed it whatever a socket read returned; it returns every frame
 * completed so far and keeps the rest. A bad length throws FrameError and leaves the
 * decoder failed, since the framing is lost from then on.
 */
abstract class Decoder<F> {
  private pending: Uint8Array = empty;
  private failure?: FrameError;

  constructor(
    private readonly headerSize: number,
    private readonly lengthOffset: number,
    readonly maxFrame: number,
    private readonly channel: string,
  ) {}

  protected abstract frame(data: Uint8Array, at: number, length: number): F;

  /** Bytes held for a frame not yet complete. */
  get buffered(): number {
    return this.pending.byteLength;
  }

  push(chunk: Uint8Array): F[] {
    if (this.failure) throw this.failure;
    // A plain view, so that slice() copies even when the chunk is a Node Buffer.
    const plain = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const data = this.pending.byteLength ? concat(this.pending, plain) : plain;
    const frames: F[] = [];
    let at = 0;
    while (data.byteLength - at >= this.headerSize) {
      const length = view(data).getUint32(at + this.lengthOffset);
      if (length < this.headerSize) {
        this.fail('malformed', `${this.channel} frame length ${length} is shorter than its ${this.headerSize}-byte header`);
      }
      if (length > this.maxFrame) this.fail('oversized', `${this.channel} frame of ${length} bytes exceeds the ${this.maxFrame}-byte limit`);
      if (data.byteLength - at < length) break;
      try {
        frames.push(this.frame(data, at, length));
      } catch (err) {
        this.fail('malformed', (err as Error).message);
      }
      at += length;
    }
    // Copy the tail so that a large read is not kept alive by a few leftover bytes.
    this.pending = at === data.byteLength ? empty : data.slice(at);
    return frames;
  }

  private fail(kind: FrameError['kind'], message: string): never {
    this.pending = empty;
    this.failure = new FrameError(kind, message);
    throw this.failure;
  }
}

export class CtlDecoder extends Decoder<CtlFrame> {
  constructor(maxFrame = MAX_CTL_FRAME) {
    super(CTL_HEADER_SIZE, 4, maxFrame, 'ctl');
  }
  protected frame(data: Uint8Array, at: number, length: number): CtlFrame {
    return { code: view(data).getUint32(at), payload: data.slice(at + CTL_HEADER_SIZE, at + length) };
  }
}

export class TtyDecoder extends Decoder<TtyFrame> {
  constructor(maxFrame = MAX_TTY_FRAME) {
    super(TTY_HEADER_SIZE, 8, maxFrame, 'tty');
  }
  protected frame(data: Uint8Array, at: number, length: number): TtyFrame {
    const seq = view(data).getBigUint64(at);
    if (seq > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError('malformed', `stream seq ${seq} is above 2^53`);
    return { seq: Number(seq), payload: data.slice(at + TTY_HEADER_SIZE, at + length) };
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

// ---- payload helpers ----------------------------------------------------------------

/** A 4-byte big-endian count (the VERSION ACK, NEXT). */
export function encodeUint32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  view(out).setUint32(0, n);
  return out;
}

export function decodeUint32(payload: Uint8Array): number {
  if (payload.byteLength !== 4) throw new FrameError('malformed', `expected a 4-byte count, got ${payload.byteLength} bytes`);
  return view(payload).getUint32(0);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const encodeJson = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));

/** Parses a JSON payload; the caller validates the shape. */
export function decodeJson<T>(payload: Uint8Array): T {
  try {
    return JSON.parse(decoder.decode(payload)) as T;
  } catch (err) {
    throw new FrameError('malformed', `payload is not JSON: ${(err as Error).message}`);
  }
}

export const decodeText = (payload: Uint8Array): string => decoder.decode(payload);
export const encodeText = (text: string): Uint8Array => encoder.encode(text);
