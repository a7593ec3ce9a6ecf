// Container and exec output on the host: one file per process and stream under the
// sandbox's run directory, so `logs` works after the process exited (and after the
// runtime restarted). Writes are queued per file, in arrival order.
import { createWriteStream, mkdirSync, openSync, readSync, closeSync, fstatSync, rmSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';

export type OutputStream = 'stdout' | 'stderr';

/** The most a logs reply returns per stream. */
export const MAX_LOG_REPLY_BYTES = 1024 * 1024;

export class OutputLog {
  private readonly writers = new Map<string, WriteStream>();
  /** Files whose last write failed: said once, until one takes output again. */
  private readonly refusing = new Set<string>();

  constructor(
    private readonly dir: string,
    private readonly log?: Logger,
  ) {}

  private path(containerId: string, execId: string, stream: OutputStream): string {
    const who = !execId || execId === containerId ? containerId : `${containerId}.${execId}`;
    return join(this.dir, `${who}.${stream}`);
  }

  append(containerId: string, execId: string, stream: OutputStream, data: Uint8Array): void {
    const path = this.path(containerId, execId, stream);
    let w = this.writers.get(path);
    if (!w) {
      mkdirSync(this.dir, { recursive: true });
      const writer = createWriteStream(path, { flags: 'a' });
      // A failed write (a full disk) ends the stream: what comes next opens the file again,
      // so the output resumes once there is room; what the disk refused is lost, and said so.
      writer.on('error', (err) => {
        if (this.writers.get(path) === writer) this.writers.delete(path);
        if (this.refusing.has(path)) return;
        this.refusing.add(path);
        this.log?.warn({ err, containerId, execId, stream }, 'output not kept: the sandbox log refused it (said once until it takes output again)');
      });
      w = writer;
      this.writers.set(path, w);
    }
    if (this.refusing.has(path)) w.write(data, (err) => err || this.refusing.delete(path));
    else w.write(data);
  }

  /** Waits until everything appended so far is on disk. */
  async flush(): Promise<void> {
    // An empty write completes after every earlier one ('drain' only follows a write that filled the buffer).
    await Promise.all(
      [...this.writers.values()].map((w) => new Promise<void>((r) => (w.destroyed || w.writableLength === 0 ? r() : w.write(Buffer.alloc(0), () => r())))),
    );
  }

  /**
   * The last `tailBytes` of each stream (0: everything kept, up to the reply limit), or,
   * with offsets, what follows them (for following output as it grows). `*End` is the
   * byte offset just past what was returned.
   */
  async read(
    containerId: string,
    execId: string,
    tailBytes = 0,
    offsets?: { stdout: number; stderr: number },
  ): Promise<{ stdout: string; stderr: string; truncated: boolean; stdoutEnd: number; stderrEnd: number }> {
    await this.flush();
    const limit = tailBytes > 0 ? Math.min(tailBytes, MAX_LOG_REPLY_BYTES) : MAX_LOG_REPLY_BYTES;
    let truncated = false;
    const read = (stream: OutputStream): [string, number] => {
      let fd: number;
      try {
        fd = openSync(this.path(containerId, execId, stream), 'r');
      } catch {
        return ['', 0];
      }
      try {
        const size = fstatSync(fd).size;
        const from = offsets ? Math.min(offsets[stream], size) : size - Math.min(size, limit);
        let length = Math.min(size - from, limit);
        if (!offsets && from > 0 && tailBytes === 0) truncated = true;
        const buf = Buffer.alloc(length);
        readSync(fd, buf, 0, length, from);
        // A following reader gets whole UTF-8 characters only: the rest comes next time.
        if (offsets) length -= incompleteTail(buf);
        return [buf.subarray(0, length).toString('utf8'), from + length];
      } finally {
        closeSync(fd);
      }
    };
    const [stdout, stdoutEnd] = read('stdout');
    const [stderr, stderrEnd] = read('stderr');
    return { stdout, stderr, truncated, stdoutEnd, stderrEnd };
  }

  /** Closes every file; `remove` also deletes them. */
  async close(remove = false): Promise<void> {
    await Promise.all([...this.writers.values()].map((w) => new Promise<void>((r) => (w.destroyed ? r() : w.end(() => r())))));
    this.writers.clear();
    if (remove) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** How many bytes at the end of `buf` start a UTF-8 character that is not complete. */
function incompleteTail(buf: Buffer): number {
  for (let back = 1; back <= Math.min(3, buf.length); back++) {
    const b = buf[buf.length - back]!;
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}
