// A process's output held for readers that pull it (kata ReadStdout/ReadStderr): reads
// block until data or end of stream. Past a high-water mark the pipe is paused, so a
// process whose output nobody reads blocks on write instead of growing the guest.
import type { Readable } from 'node:stream';

const DEFAULT_READ = 64 * 1024;
const HIGH_WATER = 1024 * 1024;

interface Waiter {
  len: number;
  resolve(data: Uint8Array): void;
}

export class OutputBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  private ended = false;
  private eofSeen = false;
  private waiters: Waiter[] = [];
  private source: Readable | undefined;
  private readonly eofListeners: (() => void)[] = [];

  constructor(private readonly highWater = HIGH_WATER) {}

  /** Takes the output of a stream; the buffer ends when the stream does. */
  attach(stream: Readable): void {
    this.source = stream;
    stream.on('data', (chunk: Buffer) => this.push(chunk));
    stream.once('end', () => this.end());
    stream.once('close', () => this.end());
    stream.on('error', () => this.end());
  }

  push(chunk: Buffer): void {
    if (this.ended || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
    this.serve();
    if (this.size >= this.highWater) this.source?.pause();
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.serve();
  }

  get buffered(): number {
    return this.size;
  }

  /** True once a reader has been told about the end of the stream. */
  get finished(): boolean {
    return this.eofSeen;
  }

  /** Called once the end of the stream has been handed to a reader. */
  onFinished(listener: () => void): void {
    if (this.eofSeen) listener();
    else this.eofListeners.push(listener);
  }

  /** Up to `len` bytes (0 means a default size); an empty result is the end of the stream. */
  read(len: number, signal?: AbortSignal): Promise<Uint8Array> {
    const want = len > 0 ? len : DEFAULT_READ;
    if (this.size > 0 || this.ended) return Promise.resolve(this.take(want));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { len: want, resolve };
      this.waiters.push(waiter);
      signal?.addEventListener(
        'abort',
        () => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(signal.reason ?? new Error('read cancelled'));
        },
        { once: true },
      );
    });
  }

  /** Everything buffered now, without waiting (for drains at shutdown and for tests). */
  takeAll(): Buffer {
    const all = Buffer.concat(this.chunks);
    this.chunks = [];
    this.size = 0;
    this.source?.resume();
    return all;
  }

  private serve(): void {
    while (this.waiters.length > 0 && (this.size > 0 || this.ended)) {
      const w = this.waiters.shift()!;
      w.resolve(this.take(w.len));
    }
  }

  private take(len: number): Uint8Array {
    if (this.size === 0) {
      if (this.ended && !this.eofSeen) {
        this.eofSeen = true;
        for (const l of this.eofListeners.splice(0)) l();
      }
      return new Uint8Array(0);
    }
    const parts: Buffer[] = [];
    let n = 0;
    while (n < len && this.chunks.length > 0) {
      const head = this.chunks[0]!;
      const part = head.length <= len - n ? head : head.subarray(0, len - n);
      if (part === head) this.chunks.shift();
      else this.chunks[0] = head.subarray(part.length);
      parts.push(part);
      n += part.length;
    }
    this.size -= n;
    if (this.size < this.highWater) this.source?.resume();
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }
}
