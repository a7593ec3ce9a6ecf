// Reading the event stream back: follow live events, or replay them from the start or
// from a sequence number. Used by the CLI and the tests.
import { jetstream, DeliverPolicy } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Event } from './messages.gen.js';
import { decodeTrusted } from './codec.js';
import { streams, subjects } from './subjects.js';

export interface ReadOptions {
  /** Only this sandbox's events (its containers' included). */
  sandboxId?: string;
  /**
   * Where to start. With a sandbox: the sandbox's own event sequence (1 = its first).
   * Without: the stream sequence. Omitted: from the start.
   */
  since?: number;
  /** Only events published from now on. */
  newOnly?: boolean;
  /** Keep waiting for new events instead of stopping at the end of the stream. */
  follow?: boolean;
  /** Ends the reading (the generator returns) even while it waits for the next event. */
  signal?: AbortSignal;
}

export interface StoredEvent {
  streamSeq: number;
  subject: string;
  event: Event;
}

/** Yields stored events in order; without `follow` it ends at the stream's current end. */
export async function* readEvents(nc: NatsConnection, opts: ReadOptions = {}): AsyncGenerator<StoredEvent> {
  const js = jetstream(nc);
  const filter = opts.sandboxId ? subjects.sandboxEvents(opts.sandboxId) : subjects.eventsAll();
  const byStreamSeq = !opts.sandboxId && opts.since !== undefined;
  const consumer = await js.consumers.get(streams.events, {
    filter_subjects: filter,
    ...(opts.newOnly
      ? { deliver_policy: DeliverPolicy.New }
      : byStreamSeq
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, opts.since!) }
        : { deliver_policy: DeliverPolicy.All }),
  });
  const sandboxSince = opts.sandboxId ? (opts.since ?? 0) : 0;
  if (!opts.follow) {
    // Bounded read: stop at the last message the consumer had pending when it started.
    const info = await consumer.info(true);
    let pending = info.num_pending;
    if (pending === 0) return;
    const messages = await consumer.consume();
    try {
      for await (const m of messages) {
        const event = decodeTrusted<Event>(m.data);
        if ((event.seq ?? 0) >= sandboxSince) yield { streamSeq: m.seq, subject: m.subject, event };
        if (--pending <= 0 || m.info.pending === 0) break;
      }
    } finally {
      await messages.close();
    }
    return;
  }
  if (opts.signal?.aborted) return;
  const messages = await consumer.consume();
  const stop = () => void messages.close();
  opts.signal?.addEventListener('abort', stop, { once: true });
  try {
    for await (const m of messages) {
      const event = decodeTrusted<Event>(m.data);
      if ((event.seq ?? 0) >= sandboxSince) yield { streamSeq: m.seq, subject: m.subject, event };
    }
  } finally {
    opts.signal?.removeEventListener('abort', stop);
    await messages.close();
  }
}
