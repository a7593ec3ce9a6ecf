// A virtio-serial port inside a VM, found by the name the host gave it. The port is a
// character device: reads block until the host writes, and return 0 (EOF) while no host
// is connected to the other end; writes block until a host is connected. Node has no
// socket handle for such a device, so reads and writes go through the thread pool
// (UV_THREADPOOL_SIZE must leave room for them) and each host connection is handed out
// as a Duplex of its own, ended when the host goes away.
import { closeSync, openSync, read, readdirSync, readFileSync, write } from 'node:fs';
import { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

const PORTS_DIR = '/sys/class/virtio-ports';
const READ_SIZE = 64 * 1024;
/** How often a port without a host is read again. */
const IDLE_POLL_MS = 25;

/** The device of the virtio-serial port with this name, if the port exists yet. */
export function findPort(name: string): string | undefined {
  let entries: string[];
  try {
    entries = readdirSync(PORTS_DIR);
  } catch {
    return undefined;
  }
  for (const entry of entries) {
    try {
      if (readFileSync(`${PORTS_DIR}/${entry}/name`, 'utf8').trim() === name) return `/dev/${entry}`;
    } catch {
      // a port going away
    }
  }
  return undefined;
}

/** Waits for the port to appear: it shows up some time after its driver loads. */
export async function waitForPort(name: string, timeoutMs: number): Promise<string> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const dev = findPort(name);
    if (dev) return dev;
    if (Date.now() >= end) throw new Error(`virtio-serial port ${name} did not appear within ${timeoutMs} ms`);
    await sleep(20);
  }
}

const readOnce = (fd: number, buf: Buffer) =>
  new Promise<number>((resolve, reject) => read(fd, buf, 0, buf.length, null, (err, n) => (err ? reject(err) : resolve(n))));

const writeAll = async (fd: number, data: Uint8Array) => {
  let off = 0;
  while (off < data.byteLength) {
    off += await new Promise<number>((resolve, reject) =>
      write(fd, data, off, data.byteLength - off, null, (err, n) => (err ? reject(err) : resolve(n))),
    );
  }
};

/** One host connection on a port. Writes are queued in order on the port's fd. */
class HostConnection extends Duplex {
  constructor(private readonly port: SerialPort) {
    super({ allowHalfOpen: false });
  }
  override _read(): void {}
  /**
   * Every write comes here (Node's default _write hands a single chunk to _writev): what
   * was written while the port was busy goes in one write, as each is a trip through the
   * thread pool and a host wake-up.
   */
  override _writev(chunks: { chunk: Buffer }[], callback: (err?: Error | null) => void): void {
    const data = chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk));
    this.port.send(this, data).then(() => callback(), callback);
  }
}

export class SerialPort {
  private readonly fd: number;
  private connected = false;
  private current: HostConnection | undefined;
  private writing: Promise<void> = Promise.resolve();
  private closed = false;

  /**
   * Opens the port. `accept` gets a Duplex for each host connection, at once for the
   * first (whose writes wait for the host) and after each disconnection for the next.
   */
  constructor(
    readonly device: string,
    private readonly accept: (conn: Duplex) => void,
  ) {
    this.fd = openSync(device, 'r+');
    this.next();
    void this.readLoop();
  }

  private next(): void {
    if (this.closed) return;
    const conn = new HostConnection(this);
    conn.on('error', () => {});
    this.current = conn;
    this.accept(conn);
  }

  /**
   * @internal Bytes of a connection whose host has gone are dropped, not written to the
   * next host: a new host must begin with a clean stream (a fresh yamux session, READY).
   */
  send(from: HostConnection, data: Uint8Array): Promise<void> {
    const done = this.writing.then(async () => {
      if (from !== this.current) return;
      await writeAll(this.fd, data);
      this.connected = true; // a write returns only once a host is there
    });
    this.writing = done.catch(() => {});
    return done;
  }

  private async readLoop(): Promise<void> {
    const buf = Buffer.alloc(READ_SIZE);
    while (!this.closed) {
      let n: number;
      try {
        n = await readOnce(this.fd, buf);
      } catch (err) {
        if (this.closed) return;
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN' || (err as NodeJS.ErrnoException).code === 'EINTR') continue;
        throw err;
      }
      if (n > 0) {
        this.connected = true;
        this.current?.push(Buffer.from(buf.subarray(0, n)));
        continue;
      }
      // EOF: no host. If one was there, its connection is over and the next one begins.
      if (this.connected) {
        this.connected = false;
        const gone = this.current;
        this.current = undefined;
        gone?.push(null);
        gone?.destroy();
        this.next();
      }
      await sleep(IDLE_POLL_MS);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.current?.destroy();
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
  }
}
