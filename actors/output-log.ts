// Container and exec output on the host: one file per process and stream under the
// sandbox's run directory, so `logs` works after the process exited (and after the
// runtime restarted). Writes are queued per file, in arrival order.
import { createWriteStream, mkdirSync, openSync, readSync, closeSync, fstatSync, rmSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';

export type OutputStream = 'stdout' | 'stderr';

/** The most a logs reply returns per stream. */
export const MAX_LOG_REPLY_BYTES = 1024 * 1024;

export class OutputLog {
  private readonly writers = new Map<string, WriteStream>();

  constructor(private readonly dir: string) {}

  private path(containerId: string, execId: string, stream: OutputStream): string {
    const who = !execId || execId === containerId ? containerId : `${containerId}.${execId}`;
    return join(this.dir, `${who}.${stream}`);
  }

  append(containerId: string, execId: string, stream: OutputStream, data: Uint8Array): void {
    const path = this.path(containerId, execId, stream);
    let w = this.writers.get(path);
    if (!w) {
      mkdirSync(this.dir, { recursive: true });
      w = createWriteStream(path, { flags: 'a' });
      w.on('error', () => {});
      this.writers.set(path, w);
    }
    w.write(data);
  }

  /** Waits until everything appended so far is on disk. */
  async flush(): Promise<void> {
    // An empty write completes after every earlier one ('drain' only follows a write that filled the buffer).
    await Promise.all([...this.writers.values()].map((w) => new Promise<void>((r) => (w.writableLength === 0 ? r() : w.write(Buffer.alloc(0), () => r())))));
  }

  async read(containerId: string, execId: string, tailBytes = 0): Promise<{ stdout: string; stderr: string; truncated: boolean }> {
    await this.flush();
    const limit = tailBytes > 0 ? Math.min(tailBytes, MAX_LOG_REPLY_BYTES) : MAX_LOG_REPLY_BYTES;
    let truncated = false;
    const tail = (stream: OutputStream): string => {
      let fd: number;
      try {
        fd = openSync(this.path(containerId, execId, stream), 'r');
      } catch {
        return '';
      }
      try {
        const size = fstatSync(fd).size;
        const length = Math.min(size, limit);
        if (size > length && tailBytes === 0) truncated = true;
        const buf = Buffer.alloc(length);
        readSync(fd, buf, 0, length, size - length);
        return buf.toString('utf8');
      } finally {
        closeSync(fd);
      }
    };
    return { stdout: tail('stdout'), stderr: tail('stderr'), truncated };
  }

  /** Closes every file; `remove` also deletes them. */
  async close(remove = false): Promise<void> {
    await Promise.all([...this.writers.values()].map((w) => new Promise<void>((r) => w.end(() => r()))));
    this.writers.clear();
    if (remove) rmSync(this.dir, { recursive: true, force: true });
  }
}
