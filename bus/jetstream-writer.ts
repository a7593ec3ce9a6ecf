// JetStream writes (stream publishes and KV record writes) acknowledged through the
// connection's one reply subscription (bus/replies.ts) instead of a library request
// each: a host writes about 14 acknowledged messages per noop lifecycle.
//
// What the server answers is the same either way, so failures read as the library's
// would: an error acknowledgement is a JetStreamApiError (its code says "wrong last
// sequence" for a revision that moved), no stream for the subject NoRespondersError,
// no answer in time TimeoutError, a closed connection ClosedConnectionError.
import { JetStreamApiError, type ApiError } from '@nats-io/jetstream';
import { headers, type NatsConnection } from '@nats-io/transport-node';
import { Replies } from './replies.js';

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

const writers = new WeakMap<NatsConnection, JetStreamWriter>();
const decoder = new TextDecoder();

export class JetStreamWriter {
  /** The connection's writer. */
  static for(nc: NatsConnection): JetStreamWriter {
    let w = writers.get(nc);
    if (!w) writers.set(nc, (w = new JetStreamWriter(Replies.for(nc))));
    return w;
  }

  private constructor(private readonly replies: Replies) {}

  /** Writes one message and resolves once the stream has stored it. */
  async write(subject: string, data: Uint8Array, opts: WriteOptions): Promise<WriteAck> {
    const h = opts.msgId !== undefined || opts.expectedLastSubjectSeq !== undefined || opts.kvOperation ? headers() : undefined;
    if (opts.msgId !== undefined) h!.set('Nats-Msg-Id', opts.msgId);
    if (opts.expectedLastSubjectSeq !== undefined) h!.set('Nats-Expected-Last-Subject-Sequence', String(opts.expectedLastSubjectSeq));
    if (opts.kvOperation) h!.set('KV-Operation', opts.kvOperation);
    const msg = await this.replies.request(subject, data, opts.timeoutMs, h);
    let v: { stream?: string; seq?: number; duplicate?: boolean; error?: ApiError };
    try {
      v = JSON.parse(decoder.decode(msg.data)) as typeof v;
    } catch {
      throw new Error(`invalid JetStream acknowledgement for ${subject}`);
    }
    if (v.error) throw new JetStreamApiError(v.error);
    if (!v.stream || typeof v.seq !== 'number') throw new Error(`invalid JetStream acknowledgement for ${subject}`);
    return { stream: v.stream, seq: v.seq, duplicate: v.duplicate === true };
  }
}
