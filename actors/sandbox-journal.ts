// What a sandbox leaves on the bus: every numbered lifecycle notice as an event in the
// VC_EVENTS stream, and its record (status and persisted snapshot) in KV. A command
// answers only after `flush`: its events are stored, or the command says they are not.
import { unavailable } from '../bus/errors.js';
import type * as Bus from '../bus/messages.gen.js';
import type { LifecycleNotice } from '../machines/lifecycle.js';
import type { Logger } from 'pino';

/** Where the journal writes; the host provides it. */
export interface JournalSink {
  /** Stores one event; resolves once the stream has it. `dedupId` names it across retries. */
  publish(event: Bus.Event, dedupId: string): Promise<void>;
  /** Writes (or removes) the sandbox's record. */
  persist(): Promise<void>;
}

/** The bus event of a numbered notice. */
export function toBusEvent(host: string, sandboxId: string, seq: number, n: LifecycleNotice, time = new Date().toISOString()): Bus.Event {
  const event: Bus.Event = { type: n.type, sandboxId, seq, time, host, state: n.state };
  if (n.containerId) event.containerId = n.containerId;
  if (n.execId) event.execId = n.execId;
  if ('pid' in n) event.pid = n.pid;
  if ('exitStatus' in n && n.exitStatus !== undefined) event.exitStatus = n.exitStatus;
  if ('exitedAt' in n && n.exitedAt) event.exitedAt = n.exitedAt;
  if ('reason' in n && n.reason) event.reason = n.reason;
  if ('message' in n && n.message) event.message = n.message;
  return event;
}

export class SandboxJournal {
  private inflight: Set<Promise<void>> | undefined;
  /** Events that could not be stored since the last flush. */
  private lost: Array<{ seq: number; type: string; error: string }> | undefined;
  private persisting: Promise<void> | undefined;
  private persistAgain = false;

  constructor(
    private readonly host: string,
    private readonly sandboxId: string,
    /** Distinguishes this incarnation of the sandbox id in de-duplication ids. */
    private readonly incarnation: string,
    private readonly sink: JournalSink,
    private readonly log: () => Logger,
  ) {}

  /** Publishes a numbered notice and schedules a write of the record. */
  record(seq: number, notice: LifecycleNotice): void {
    const event = toBusEvent(this.host, this.sandboxId, seq, notice);
    const p = this.sink.publish(event, `${this.sandboxId}.${this.incarnation}.${seq}`).catch((err: unknown) => {
      const error = err instanceof Error ? err.message : String(err);
      this.log().error({ err, seq, type: notice.type }, 'event not stored');
      (this.lost ??= []).push({ seq, type: notice.type, error });
    });
    const inflight = (this.inflight ??= new Set());
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
    this.schedulePersist();
  }

  /** Writes the record soon; writes asked for meanwhile are folded into one. */
  schedulePersist(): void {
    if (this.persisting) {
      this.persistAgain = true;
      return;
    }
    this.persisting = (async () => {
      do {
        this.persistAgain = false;
        await new Promise<void>((r) => setImmediate(r));
        await this.sink.persist().catch((err: unknown) => this.log().error({ err }, 'sandbox record not stored'));
      } while (this.persistAgain);
      this.persisting = undefined;
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
    if (!lost) return;
    this.lost = undefined;
    const which = lost.map((l) => `#${l.seq} ${l.type}`).join(', ');
    throw unavailable(`the change was made, but its event${lost.length > 1 ? 's' : ''} ${which} could not be stored: ${lost[0]!.error}`);
  }
}
