// Reading the event stream back: replay from the start or from a sequence number, and
// follow live events. Used by the CLI and the tests.
//
// It reads with message gets ("the next stored message at or after seq N matching the
// filter", answered by the stream's leader) rather than a consumer: creating a consumer
// lets its creator pick a subject the server then delivers stored messages to, with no
// permission check, so clients are not allowed to create any (see roles.ts). Following
// listens to the live event subjects only as a doorbell: what it yields always comes
// from the stream, in stream order, each event once.
import { jetstreamManager, type JetStreamManager, type MsgRequest } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Event } from './messages.gen.js';
import { decodeTrusted } from './codec.js';
import { streams, subjects } from './subjects.js';
import { jetStreamOptions } from './connection.js';

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
  /**
   * With a sandbox: only its latest incarnation (a sandbox id deleted and created again
   * starts its event sequence at 1 again), from its last `create` event on.
   */
  latestIncarnation?: boolean;
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

/** While following, how long to wait for a doorbell before looking anyway. */
const FOLLOW_POLL_MS = 1000;
/** A doorbell can ring before the stream stored the message: look once more after this. */
const DOORBELL_RECHECK_MS = 25;

/** Yields stored events in order; without `follow` it ends at the stream's current end. */
export async function* readEvents(nc: NatsConnection, opts: ReadOptions = {}): AsyncGenerator<StoredEvent> {
  const jsm = await jetstreamManager(nc, jetStreamOptions(nc));
  const filter = opts.sandboxId ? subjects.sandboxEvents(opts.sandboxId) : subjects.eventsAll();
  const sandboxSince = opts.sandboxId ? (opts.since ?? 0) : 0;
  const doorbell = opts.follow ? new Doorbell(nc, filter, opts.signal) : undefined;
  try {
    const state = (await jsm.streams.info(streams.events)).state;
    let next = opts.newOnly ? state.last_seq + 1 : !opts.sandboxId && opts.since !== undefined ? Math.max(1, opts.since) : 1;
    if (opts.sandboxId && opts.latestIncarnation && !opts.newOnly) next = (await lastCreate(jsm, opts.sandboxId)) ?? next;
    const end = state.last_seq;
    for (;;) {
      const m = await nextStored(jsm, next, filter);
      if (m && (doorbell || m.seq <= end)) {
        next = m.seq + 1;
        const event = decodeTrusted<Event>(m.data);
        if ((event.seq ?? 0) >= sandboxSince) yield { streamSeq: m.seq, subject: m.subject, event };
        continue;
      }
      if (!doorbell || opts.signal?.aborted) return;
      const rang = await doorbell.wait(FOLLOW_POLL_MS);
      if (rang && !(await nextStored(jsm, next, filter))) await sleep(DOORBELL_RECHECK_MS);
    }
  } finally {
    doorbell?.close();
  }
}

/** The stream sequence of a sandbox's last create event, if it has one. */
async function lastCreate(jsm: JetStreamManager, sid: string): Promise<number | undefined> {
  const m = await jsm.streams.getMessage(streams.events, { last_by_subj: subjects.sandboxEvent(sid, 'create') }).catch(() => null);
  return m?.seq;
}

function nextStored(jsm: JetStreamManager, seq: number, filter: string) {
  // STREAM.MSG.GET takes next_by_subj since nats-server 2.9; the client's type lists only seq and last_by_subj.
  return jsm.streams.getMessage(streams.events, { seq, next_by_subj: filter } as unknown as MsgRequest);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Rings when a message arrives on the live subjects; its content is never used. */
class Doorbell {
  private readonly sub;
  private ring: (() => void) | undefined;
  private rung = false;

  constructor(nc: NatsConnection, filter: string, signal?: AbortSignal) {
    const ring = () => {
      this.rung = true;
      this.ring?.();
    };
    this.sub = nc.subscribe(filter, { callback: ring });
    signal?.addEventListener('abort', ring, { once: true });
  }

  /** Resolves true when it rang (now or since the last wait), false after `ms`. */
  wait(ms: number): Promise<boolean> {
    if (this.rung) {
      this.rung = false;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.ring = undefined;
        resolve(false);
      }, ms);
      this.ring = () => {
        clearTimeout(timer);
        this.ring = undefined;
        this.rung = false;
        resolve(true);
      };
    });
  }

  close(): void {
    this.sub.unsubscribe();
  }
}
