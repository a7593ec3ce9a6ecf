// JetStream writes (stream publishes and KV record writes) acknowledged through one reply
// subscription per connection. The client library's own publish makes each write a
// request of its own: a request object, a timer, and an Error with a stack trace made
// when the request is settled. A host writes about 14 acknowledged messages per noop
// lifecycle, and that machinery cost ~55 µs of CPU per write against ~10 µs this way
// (bench/README.md, "Where the time of a command goes").
//
// What the server answers is the same either way, so failures read as the library's
// would: an error acknowledgement is a JetStreamApiError (its code says "wrong last
// sequence" for a revision that moved), no stream for the subject NoRespondersError,
// no answer in time TimeoutError, a closed connection ClosedConnectionError.
import { JetStreamApiError, type ApiError } from '@nats-io/jetstream';
import { ClosedConnectionError, createInbox, headers, NoRespondersError, TimeoutError, type Msg, type NatsConnection } from '@nats-io/transport-node';

/** What the stream says it stored. */
export interface WriteAck {
  stream: string;
  seq: number;
  /** The stream already had a message with this Nats-Msg-Id: nothing new was stored. */
  duplicate: boolean;
}

export interface WriteOptions {
  /** De-duplication id (Nats-Msg-Id): a retry with the same id is stored once. */
  msgId?: string;
  /** The write is refused unless the subject's last message has this sequence (0: none yet). */
  expectedLastSubjectSeq?: number;
  /** A KV delete marker. */
  kvOperation?: 'DEL';
  timeoutMs: number;
}

interface Pending {
  resolve(ack: WriteAck): void;
  reject(err: Error): void;
  subject: string;
  deadline: number;
}

/** How often deadlines are checked: one timer for every write, not one each. */
const SWEEP_MS = 100;
const writers = new WeakMap<NatsConnection, JetStreamWriter>();
const decoder = new TextDecoder();

export class JetStreamWriter {
  private readonly prefix: string;
  private readonly pending = new Map<number, Pending>();
  private next = 0;
  private sweeper: ReturnType<typeof setInterval> | undefined;
  private closed = false;

  /** The connection's writer (one reply subscription per connection). */
  static for(nc: NatsConnection): JetStreamWriter {
    let w = writers.get(nc);
    if (!w) writers.set(nc, (w = new JetStreamWriter(nc)));
    return w;
  }

  private constructor(private readonly nc: NatsConnection) {
    this.prefix = `${createInbox()}.`;
    nc.subscribe(`${this.prefix}*`, { callback: (err, msg) => (err ? this.failAll(err) : this.settle(msg)) });
    void nc.closed().then(() => {
      this.closed = true;
      this.failAll(new ClosedConnectionError());
    });
  }

  /** Writes one message and resolves once the stream has stored it. */
  write(subject: string, data: Uint8Array, opts: WriteOptions): Promise<WriteAck> {
    if (this.closed) return Promise.reject(new ClosedConnectionError());
    return new Promise<WriteAck>((resolve, reject) => {
      const id = ++this.next;
      const h = opts.msgId !== undefined || opts.expectedLastSubjectSeq !== undefined || opts.kvOperation ? headers() : undefined;
      if (opts.msgId !== undefined) h!.set('Nats-Msg-Id', opts.msgId);
      if (opts.expectedLastSubjectSeq !== undefined) h!.set('Nats-Expected-Last-Subject-Sequence', String(opts.expectedLastSubjectSeq));
      if (opts.kvOperation) h!.set('KV-Operation', opts.kvOperation);
      this.pending.set(id, { resolve, reject, subject, deadline: performance.now() + opts.timeoutMs });
      try {
        this.nc.publish(subject, data, { reply: this.prefix + id, headers: h });
      } catch (err) {
        this.pending.delete(id);
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS);
      this.sweeper.unref?.();
    });
  }

  private settle(msg: Msg): void {
    const id = Number(msg.subject.slice(this.prefix.length));
    const p = this.pending.get(id);
    if (!p) return; // timed out already
    this.pending.delete(id);
    if (msg.headers?.code === 503) return p.reject(new NoRespondersError(p.subject));
    let v: { stream?: string; seq?: number; duplicate?: boolean; error?: ApiError };
    try {
      v = JSON.parse(decoder.decode(msg.data)) as typeof v;
    } catch {
      return p.reject(new Error(`invalid JetStream acknowledgement for ${p.subject}`));
    }
    if (v.error) return p.reject(new JetStreamApiError(v.error));
    if (!v.stream || typeof v.seq !== 'number') return p.reject(new Error(`invalid JetStream acknowledgement for ${p.subject}`));
    p.resolve({ stream: v.stream, seq: v.seq, duplicate: v.duplicate === true });
  }

  private sweep(): void {
    const now = performance.now();
    for (const [id, p] of this.pending) {
      if (p.deadline > now) continue;
      this.pending.delete(id);
      p.reject(new TimeoutError());
    }
    this.stopSweepingWhenIdle();
  }

  /** The sweeper runs while writes are pending (and one period longer: no churn of timers under load). */
  private stopSweepingWhenIdle(): void {
    if (this.pending.size > 0 || !this.sweeper) return;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  private failAll(err: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(err);
  }
}
