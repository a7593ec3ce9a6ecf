// What a sandbox leaves on the bus: every numbered lifecycle notice as an event in the
// VC_EVENTS stream, and its record (status and persisted snapshot) in KV. A command
// answers only after `flush`: its events are stored, or the command says they are not.
// An event the stream cannot take waits in the host's outbox (bus/outbox.ts) and is
// stored when it can; a record write that fails is retried until it is written, or
// until the record turns out to be no longer this host's (then the registry lets go).
import { unavailable } from '../bus/errors.js';
import type * as Bus from '../bus/messages.gen.js';
import type { LifecycleNotice } from '../machines/lifecycle.js';
import type { Logger } from 'pino';

/** Where the journal writes; the host provides it. */
export interface JournalSink {
  /**
   * Stores one event; resolves once the stream has it, or with 'queued' when it waits in
   * the outbox ('dropped': the outbox is full, or its disk refused it). `dedupId` names it across retries.
   */
  publish(event: Bus.Event, dedupId: string): Promise<PublishOutcome | void>;
  /** Writes (or removes) the sandbox's record. */
  persist(): Promise<void>;
  /** Why nothing should change now (the bus is down, events of the lane wait), or undefined. */
  blocked?(lane: string): string | undefined;
  /** How many events of the lane still wait in the outbox. */
  pending?(lane: string): number;
}

/** How an event fared: stored, waiting in the outbox, or dropped (outbox full). */
export type PublishOutcome = 'stored' | 'queued' | 'dropped';

const PERSIST_RETRY_MIN_MS = 100;
const PERSIST_RETRY_MAX_MS = 2_000;

/** The bus event of a numbered notice. */
export function toBusEvent(host: string, sandboxId: string, seq: number, n: LifecycleNotice, time = new Date().toISOString()): Bus.Event {
  const event: Bus.Event = { type: n.type, sandboxId, seq, time, host, state: n.state };
  if (n.containerId) event.containerId = n.containerId;
  if (n.execId) event.execId = n.execId;
  if ('pid' in n) event.pid = n.pid;
  if ('pidUnknown' in n && n.pidUnknown) event.pidUnknown = true;
  if ('exitStatus' in n && n.exitStatus !== undefined) event.exitStatus = n.exitStatus;
  if ('exitStatusUnknown' in n && n.exitStatusUnknown) event.exitStatusUnknown = true;
  if ('exitedAt' in n && n.exitedAt) event.exitedAt = n.exitedAt;
  if ('reason' in n && n.reason) event.reason = n.reason;
  if ('message' in n && n.message) event.message = n.message;
  return event;
}

export class SandboxJournal {
  private inflight: Set<Promise<void>> | undefined;
  /** Events that could not be stored since the last flush. */
  private lost: Array<{ seq: number; type: string; error: string }> | undefined;
  /** Events waiting in the outbox since the last flush. */
  private queued: Array<{ seq: number; type: string }> | undefined;
  private persisting: Promise<void> | undefined;
  private persistAgain = false;
  /** The last record write failed; a retry is scheduled. */
  private recordError: string | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private retryDelay = PERSIST_RETRY_MIN_MS;
  /** The record is no longer this host's: nothing is published or written any more. */
  private silenced = false;

  constructor(
    private readonly host: string,
    private readonly sandboxId: string,
    /** Distinguishes this incarnation of the sandbox id in de-duplication ids. */
    private readonly incarnation: string,
    private readonly sink: JournalSink,
    private readonly log: () => Logger,
  ) {}

  /** The outbox lane of this sandbox incarnation's events. */
  get lane(): string {
    return `${this.sandboxId}.${this.incarnation}`;
  }

  /** Throws Unavailable when a change now could not be recorded (checked before commands that change state). */
  assertWritable(): void {
    if (this.silenced) throw unavailable(`sandbox ${this.sandboxId} is no longer this host's: its record was forgotten or replaced`);
    const why = this.sink.blocked?.(this.lane) ?? (this.recordError ? `its record is not stored yet (${this.recordError})` : undefined);
    if (why) throw unavailable(`sandbox ${this.sandboxId} cannot change now: ${why}`);
  }

  /** The record is no longer ours: stop writing anything for this incarnation. */
  silence(): void {
    this.silenced = true;
    clearTimeout(this.retryTimer);
    this.recordError = undefined;
  }

  /** Retries a failed record write now (the connection is back). */
  retryRecord(): void {
    if (this.recordError && !this.persisting) this.schedulePersist();
  }

  /** Publishes a numbered notice and schedules a write of the record. */
  record(seq: number, notice: LifecycleNotice): void {
    if (this.silenced) return;
    const event = toBusEvent(this.host, this.sandboxId, seq, notice);
    const p = this.sink.publish(event, `${this.lane}.${seq}`).then(
      (outcome) => {
        if (outcome === 'queued') (this.queued ??= []).push({ seq, type: notice.type });
        else if (outcome === 'dropped') (this.lost ??= []).push({ seq, type: notice.type, error: 'the outbox could not keep it (full, or its disk refused it)' });
      },
      (err: unknown) => {
        const error = err instanceof Error ? err.message : String(err);
        this.log().error({ err, seq, type: notice.type }, 'event not stored');
        (this.lost ??= []).push({ seq, type: notice.type, error });
      },
    );
    const inflight = (this.inflight ??= new Set());
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
    this.schedulePersist();
  }

  /** Writes the record soon; writes asked for meanwhile are folded into one. */
  schedulePersist(): void {
    if (this.silenced) return;
    if (this.persisting) {
      this.persistAgain = true;
      return;
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.persisting = (async () => {
      do {
        this.persistAgain = false;
        await new Promise<void>((r) => setImmediate(r));
        if (this.silenced) break;
        try {
          await this.sink.persist();
          this.recordError = undefined;
          this.retryDelay = PERSIST_RETRY_MIN_MS;
        } catch (err) {
          this.recordError = err instanceof Error ? err.message : String(err);
          this.log().warn({ err }, 'sandbox record not stored yet: retrying');
        }
      } while (this.persistAgain);
      this.persisting = undefined;
      // The record is the latest state: a retry writes whatever it is by then.
      if (this.recordError && !this.silenced) {
        this.retryTimer = setTimeout(() => this.schedulePersist(), this.retryDelay);
        this.retryTimer.unref?.();
        this.retryDelay = Math.min(this.retryDelay * 2, PERSIST_RETRY_MAX_MS);
      }
    })();
  }

  /**
   * Waits until every event so far is stored and the record written. Rejects with
   * Unavailable naming the events that could not be stored (the change they describe
   * happened: status shows it).
   */
  async flush(): Promise<void> {
    while (this.inflight && this.inflight.size > 0) await Promise.all(this.inflight);
    while (this.persisting) await this.persisting;
    const lost = this.lost;
    // Queued events the outbox stored meanwhile are no failure any more.
    const queued = this.queued && (this.sink.pending?.(this.lane) ?? 1) > 0 ? this.queued : undefined;
    this.lost = undefined;
    this.queued = undefined;
    const list = (l: Array<{ seq: number; type: string }>) => `event${l.length > 1 ? 's' : ''} ${l.map((e) => `#${e.seq} ${e.type}`).join(', ')}`;
    if (lost) throw unavailable(`the change was made, but its ${list(lost)} could not be stored: ${lost[0]!.error}`);
    if (queued) throw unavailable(`the change was made, but its ${list(queued)} could not be stored yet: they wait in the outbox and are stored when NATS is back`);
    if (this.recordError) throw unavailable(`the change was made and its events are stored, but the sandbox record is not yet (${this.recordError}); it is retried`);
  }
}
