// The event outbox: what keeps an event that JetStream could not take until it can.
//
// Events go straight to the stream while the bus is up and nothing of their lane (one
// sandbox incarnation, or one host's own events) is waiting. Otherwise (no connection,
// a failed or abandoned publish, older events of the lane still waiting) the event is
// appended to the lane's file in the outbox directory, fsynced, and published later,
// one at a time in lane order, with its original Nats-Msg-Id. A publish whose outcome
// is unknown (in flight when the connection dropped, or timed out) is retried with the
// same id, so the stream's duplicate window drops it if it was stored after all; when
// the retry comes later than half the window, the stream is asked first whether the
// subject's last message is that one.
//
// File format: one JSON line per entry, `{"done": order}` lines when an entry is
// stored; the file is removed once every entry is. A lane holds at most `maxPerLane`
// entries: past that, new events of the lane are dropped (each logged as an error, and
// the command that caused one answers Unavailable); the lane's seq then has a gap. An
// event the outbox's disk refuses (full, or out of descriptors) is dropped the same way,
// and the torn end of its line is cut off, so that the next line is whole.
import { closeSync, fdatasyncSync, fstatSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { isBusFailure, type BusHealth } from './health.js';

export type PublishOutcome = 'stored' | 'queued' | 'dropped';

/** Lanes are file names: `<sandbox id>.<incarnation>` or `host.<host>`. */
const LANE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}\.[A-Za-z0-9_-]{1,63}$/;
const FILE_SUFFIX = '.jsonl';

export const DEFAULT_MAX_PER_LANE = 10_000;
/** A publish straight to the stream: how long to wait for its acknowledgement. */
const DIRECT_TIMEOUT_MS = 10_000;
const RETRY_TIMEOUT_MS = 5_000;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2_000;

interface Entry {
  /** Position in the lane: the event's seq for a sandbox. */
  order: number;
  subject: string;
  msgId: string;
  /** The message body (the event's JSON). */
  data: string;
  /** It was sent once with an unknown outcome: it may be stored already. */
  attempted: boolean;
  /** When it was first sent or queued (ms since the epoch). */
  at: number;
}

interface Lane {
  name: string;
  queue: Entry[];
  /** Publishes straight to the stream not settled yet: abandoning one queues it. */
  inflight: Map<number, () => void>;
  fd?: number;
  draining: boolean;
}

export interface OutboxOptions {
  dir: string;
  health: BusHealth;
  log: Logger;
  /** Stores one message in the stream with its Nats-Msg-Id; resolves once stored. */
  publish(subject: string, data: Uint8Array, msgId: string, timeoutMs: number): Promise<void>;
  /** Whether the last message the stream holds on `subject` has this id. */
  stored(subject: string, msgId: string): Promise<boolean>;
  /** Whether a lane's events may still be stored (its sandbox record is still this host's). */
  stillOwned?(lane: string): Promise<boolean>;
  /** The stream's duplicate window, in ms. */
  duplicateWindowMs: number;
  maxPerLane?: number;
}

const enc = new TextEncoder();

export class EventOutbox {
  private readonly lanes = new Map<string, Lane>();
  private readonly unsubscribe: Array<() => void> = [];
  private closed = false;

  constructor(private readonly opts: OutboxOptions) {
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    // A dropped connection settles nothing: what was in flight may or may not be stored.
    this.unsubscribe.push(opts.health.onDisconnect(() => this.abandonInflight()));
  }

  /** Loads the lanes an earlier process left behind and starts storing them. */
  open(): number {
    let entries = 0;
    for (const file of readdirSync(this.opts.dir)) {
      if (!file.endsWith(FILE_SUFFIX)) continue;
      const name = file.slice(0, -FILE_SUFFIX.length);
      if (!LANE_PATTERN.test(name)) continue;
      const lane = this.lane(name);
      lane.queue = readLane(join(this.opts.dir, file));
      entries += lane.queue.length;
      if (lane.queue.length === 0) this.finishLane(lane);
      else void this.drain(lane);
    }
    if (entries) this.opts.log.warn({ entries }, 'storing events an earlier runtime left in the outbox');
    return entries;
  }

  /** Events of a lane not stored yet. */
  pending(lane: string): number {
    return this.lanes.get(lane)?.queue.length ?? 0;
  }

  /** Events of every lane not stored yet. */
  get size(): number {
    let n = 0;
    for (const lane of this.lanes.values()) n += lane.queue.length;
    return n;
  }

  /**
   * Stores one event: straight in the stream when the bus is up and the lane has
   * nothing waiting ('stored' once acknowledged), else in the lane's file ('queued').
   */
  publish(laneName: string, order: number, subject: string, data: Uint8Array, msgId: string): Promise<PublishOutcome> {
    if (!LANE_PATTERN.test(laneName)) throw new Error(`invalid outbox lane ${laneName}`);
    const lane = this.lane(laneName);
    const entry = (attempted: boolean): Entry => ({ order, subject, msgId, data: new TextDecoder().decode(data), attempted, at: Date.now() });
    if (this.closed || lane.queue.length > 0 || !this.opts.health.up) return Promise.resolve(this.enqueue(lane, entry(false)));
    return new Promise((resolve) => {
      let settled = false;
      const abandon = () => {
        if (settled) return;
        settled = true;
        lane.inflight.delete(order);
        resolve(this.enqueue(lane, entry(true)));
      };
      lane.inflight.set(order, abandon);
      this.opts.publish(subject, data, msgId, DIRECT_TIMEOUT_MS).then(
        () => {
          if (settled) return;
          settled = true;
          lane.inflight.delete(order);
          this.opts.health.jetStreamWorks();
          resolve('stored');
        },
        (err: unknown) => {
          if (settled) return;
          // Only a failure of the bus says the bus is down; any failure keeps the event.
          if (isBusFailure(err)) this.opts.health.jetStreamFailed(err);
          this.opts.log.warn({ err, subject }, 'event not stored yet: kept in the outbox');
          abandon();
        },
      );
    });
  }

  close(): void {
    this.closed = true;
    for (const u of this.unsubscribe) u();
    for (const lane of this.lanes.values()) {
      if (lane.fd !== undefined) closeSync(lane.fd);
      lane.fd = undefined;
    }
  }

  private lane(name: string): Lane {
    let lane = this.lanes.get(name);
    if (!lane) {
      lane = { name, queue: [], inflight: new Map(), draining: false };
      this.lanes.set(name, lane);
    }
    return lane;
  }

  private abandonInflight(): void {
    for (const lane of this.lanes.values()) for (const abandon of [...lane.inflight.values()]) abandon();
  }

  private enqueue(lane: Lane, entry: Entry): PublishOutcome {
    const max = this.opts.maxPerLane ?? DEFAULT_MAX_PER_LANE;
    if (lane.queue.length >= max) {
      this.opts.log.error({ lane: lane.name, subject: entry.subject, order: entry.order, max }, 'outbox full: event dropped');
      return 'dropped';
    }
    try {
      this.append(lane, entry);
    } catch (err) {
      this.opts.log.error({ err, lane: lane.name, subject: entry.subject, order: entry.order }, 'outbox cannot keep the event (its disk refused it): event dropped');
      return 'dropped';
    }
    // Kept in lane order: a failure can be reported after a later event was queued.
    let i = lane.queue.length;
    while (i > 0 && lane.queue[i - 1]!.order > entry.order) i--;
    lane.queue.splice(i, 0, entry);
    void this.drain(lane);
    return 'queued';
  }

  /**
   * Appends one line, whole or not at all: a full disk can take part of a write (a short
   * count, then ENOSPC), and a torn line would swallow the next one when the file is read.
   */
  private append(lane: Lane, line: Entry | { done: number }): void {
    lane.fd ??= openSync(join(this.opts.dir, lane.name + FILE_SUFFIX), 'a', 0o600);
    const fd = lane.fd;
    const bytes = Buffer.from(JSON.stringify(line) + '\n');
    const end = fstatSync(fd).size;
    try {
      // On a descriptor, writeFileSync writes the whole buffer (writeSync may stop short).
      writeFileSync(fd, bytes);
      fdatasyncSync(fd);
    } catch (err) {
      try {
        ftruncateSync(fd, end);
      } catch {
        // the line stays torn: reading skips it, and the line after it with it
      }
      throw err;
    }
  }

  /** Stores a lane's entries one at a time, in order, until none is left. */
  private async drain(lane: Lane): Promise<void> {
    if (lane.draining) return;
    lane.draining = true;
    const { health, log } = this.opts;
    let backoff = RETRY_MIN_MS;
    let ownerChecked = false;
    try {
      while (lane.queue.length > 0 && !this.closed) {
        // Earlier publishes of the lane first: they settle (or are abandoned) before anything is retried.
        if (lane.inflight.size > 0 || !health.isConnected) {
          await health.waitForRetry(lane.inflight.size > 0 ? 20 : RETRY_MAX_MS);
          continue;
        }
        if (!ownerChecked && this.opts.stillOwned) {
          const owned = await this.opts.stillOwned(lane.name).catch(() => undefined);
          if (owned === undefined) {
            await health.waitForRetry(backoff);
            backoff = Math.min(backoff * 2, RETRY_MAX_MS);
            continue;
          }
          ownerChecked = true;
          if (!owned) {
            this.setAside(lane);
            break;
          }
        }
        const e = lane.queue[0]!;
        try {
          const late = e.attempted && Date.now() - e.at > this.opts.duplicateWindowMs / 2;
          if (!(late && (await this.opts.stored(e.subject, e.msgId)))) {
            await this.opts.publish(e.subject, enc.encode(e.data), e.msgId, RETRY_TIMEOUT_MS);
          }
          lane.queue.shift();
          this.markDone(lane, e.order);
          health.jetStreamWorks();
          backoff = RETRY_MIN_MS;
        } catch (err) {
          if (isBusFailure(err)) health.jetStreamFailed(err);
          else log.warn({ err, lane: lane.name }, 'outbox event refused: retrying');
          e.attempted = true;
          await health.waitForRetry(backoff);
          backoff = Math.min(backoff * 2, RETRY_MAX_MS);
        }
      }
      if (lane.queue.length === 0) {
        this.finishLane(lane);
        log.info({ lane: lane.name }, 'outbox lane stored');
      }
    } finally {
      lane.draining = false;
    }
  }

  /**
   * Notes in the file that an entry is stored. When the disk refuses the note, the entry
   * is only sent again after a restart, with its id: nothing is lost.
   */
  private markDone(lane: Lane, order: number): void {
    try {
      this.append(lane, { done: order });
    } catch (err) {
      this.opts.log.warn({ err, lane: lane.name, order }, 'outbox: a stored event is not marked so on disk: a restart sends it again, with its id');
    }
  }

  /** The lane is stored: its file goes. */
  private finishLane(lane: Lane): void {
    if (lane.fd !== undefined) closeSync(lane.fd);
    lane.fd = undefined;
    rmSync(join(this.opts.dir, lane.name + FILE_SUFFIX), { force: true });
    if (lane.inflight.size === 0) this.lanes.delete(lane.name);
  }

  /**
   * The lane's sandbox is no longer this host's (its record was forgotten): its events
   * would land among another incarnation's. They are kept aside, not published.
   */
  private setAside(lane: Lane): void {
    if (lane.fd !== undefined) closeSync(lane.fd);
    lane.fd = undefined;
    const from = join(this.opts.dir, lane.name + FILE_SUFFIX);
    renameSync(from, join(this.opts.dir, `${lane.name}.forgotten`));
    this.opts.log.warn({ lane: lane.name, events: lane.queue.length }, 'outbox lane of a forgotten sandbox set aside, not published');
    lane.queue = [];
    this.lanes.delete(lane.name);
  }
}

/** A lane file's entries not marked done, in order. A torn last line is ignored. */
function readLane(file: string): Entry[] {
  const entries = new Map<number, Entry>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line) continue;
    let v: Entry | { done: number };
    try {
      v = JSON.parse(line) as Entry | { done: number };
    } catch {
      continue;
    }
    if ('done' in v) entries.delete(v.done);
    else entries.set(v.order, { ...v, attempted: true });
  }
  return [...entries.values()].sort((a, b) => a.order - b.order);
}
