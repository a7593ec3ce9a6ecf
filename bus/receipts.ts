// Receipts of forwarded commands (bus/command-service.ts): the owner host answers a
// forward with an empty message before anything else. Waited for through one reply
// subscription per connection, as JetStream acknowledgements are (bus/jetstream-writer.ts
// says why: the library's request costs a timer and an Error each), with one sweep for
// the deadlines. Nobody listening is NoRespondersError (the server's 503), no receipt in
// time TimeoutError.
import { ClosedConnectionError, createInbox, NoRespondersError, TimeoutError, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';

interface Pending {
  resolve(): void;
  reject(err: Error): void;
  subject: string;
  deadline: number;
}

const SWEEP_MS = 50;

export class Receipts {
  private readonly prefix = `${createInbox()}.`;
  private readonly pending = new Map<number, Pending>();
  private next = 0;
  private sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly nc: NatsConnection) {
    nc.subscribe(`${this.prefix}*`, {
      callback: (err, msg) => {
        if (err) return this.failAll(err);
        const id = Number(msg.subject.slice(this.prefix.length));
        const p = this.pending.get(id);
        if (!p) return; // too late
        this.pending.delete(id);
        if (msg.headers?.code === 503) p.reject(new NoRespondersError(p.subject));
        else p.resolve();
      },
    });
    void nc.closed().then(() => this.failAll(new ClosedConnectionError()));
  }

  /** Publishes and resolves once the receiver's receipt is back. */
  send(subject: string, data: Uint8Array, headers: MsgHdrs, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const id = ++this.next;
      this.pending.set(id, { resolve, reject, subject, deadline: performance.now() + timeoutMs });
      try {
        this.nc.publish(subject, data, { reply: this.prefix + id, headers });
      } catch (err) {
        this.pending.delete(id);
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      if (!this.sweeper) {
        this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
        this.sweeper.unref?.();
      }
    });
  }

  private sweep(): void {
    const now = performance.now();
    for (const [id, p] of this.pending) {
      if (p.deadline > now) continue;
      this.pending.delete(id);
      p.reject(new TimeoutError());
    }
    if (this.pending.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private failAll(err: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(err);
  }
}
