// Requests answered through one reply subscription per connection: JetStream
// acknowledgements (bus/jetstream-writer.ts), the receipts of forwarded commands
// (bus/command-service.ts) and the typed client's commands (bus/client.ts). The client
// library's own request makes an object, a timer and, when it is settled, an Error with
// a stack trace for each request (~55 µs of CPU per JetStream write here, against ~10 µs
// this way: bench/README.md); here one map holds what is pending and one sweep checks
// every deadline.
//
// Failures read as the library's: nobody listening on the subject (the server's 503)
// is NoRespondersError, no reply in time TimeoutError, a closed connection
// ClosedConnectionError, and a publish the server's permissions refuse the
// PermissionViolationError it reported (for the oldest request to that subject, as the
// library's request does).
import { ClosedConnectionError, createInbox, NoRespondersError, PermissionViolationError, TimeoutError, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';

interface Pending {
  resolve(msg: Msg): void;
  reject(err: Error): void;
  subject: string;
  deadline: number;
}

/** How often deadlines are checked: one timer for every pending request, not one each. */
const SWEEP_MS = 50;
const perConnection = new WeakMap<NatsConnection, Replies>();

export class Replies {
  private readonly prefix = `${createInbox()}.`;
  private readonly pending = new Map<number, Pending>();
  private next = 0;
  private sweeper: ReturnType<typeof setInterval> | undefined;
  private closed = false;

  /** The connection's one reply subscription. */
  static for(nc: NatsConnection): Replies {
    let r = perConnection.get(nc);
    if (!r) perConnection.set(nc, (r = new Replies(nc)));
    return r;
  }

  private constructor(private readonly nc: NatsConnection) {
    nc.subscribe(`${this.prefix}*`, { callback: (err, msg) => (err ? this.failAll(err) : this.settle(msg)) });
    void nc.closed().then(() => {
      this.closed = true;
      this.failAll(new ClosedConnectionError());
    });
    void this.watchRefusals();
  }

  /** The server refuses a publish with an asynchronous -ERR naming the subject: that request has failed. */
  private async watchRefusals(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type !== 'error' || !(s.error instanceof PermissionViolationError) || s.error.operation !== 'publish') continue;
      for (const [id, p] of this.pending) {
        if (p.subject !== s.error.subject) continue;
        this.pending.delete(id);
        p.reject(s.error);
        break;
      }
    }
  }

  /** Publishes with a reply subject of this connection's and resolves with the reply. */
  request(subject: string, data: Uint8Array, timeoutMs: number, headers?: MsgHdrs): Promise<Msg> {
    if (this.closed) return Promise.reject(new ClosedConnectionError());
    return new Promise<Msg>((resolve, reject) => {
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

  private settle(msg: Msg): void {
    const id = Number(msg.subject.slice(this.prefix.length));
    const p = this.pending.get(id);
    if (!p) return; // timed out already
    this.pending.delete(id);
    if (msg.headers?.code === 503) p.reject(new NoRespondersError(p.subject));
    else p.resolve(msg);
  }

  /** The sweeper runs while requests are pending (and one period longer: no churn of timers under load). */
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
