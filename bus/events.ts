// The event publisher: every lifecycle event goes into the VC_EVENTS JetStream stream,
// with a Nats-Msg-Id so that a publish retried after a reconnect is stored once. With
// an outbox, an event the stream cannot take now waits there (see outbox.ts).
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Event } from './messages.gen.js';
import type { HostEventType } from '../protos/event-types.js';
import { encode } from './codec.js';
import { streams, subjects } from './subjects.js';
import { EventOutbox, type PublishOutcome } from './outbox.js';
import type { BusHealth } from './health.js';
import { DUPLICATE_WINDOW_NS } from './connection.js';
import { JetStreamWriter } from './jetstream-writer.js';

/** How long a publish without an outbox waits for the stream's acknowledgement. */
const PUBLISH_TIMEOUT_MS = 10_000;

export function eventSubject(e: Pick<Event, 'sandboxId' | 'containerId' | 'type'>): string {
  const type = e.type ?? 'unknown';
  return e.containerId ? subjects.containerEvent(e.sandboxId!, e.containerId, type) : subjects.sandboxEvent(e.sandboxId!, type);
}

/** The outbox lane of a sandbox event's de-duplication id `<sid>.<incarnation>.<seq>`. */
export const laneOf = (dedupId: string) => dedupId.slice(0, dedupId.lastIndexOf('.'));

export interface PublisherOptions {
  /** Where events wait while the stream cannot take them; none publishes directly. */
  outboxDir?: string;
  health?: BusHealth;
  log?: Logger;
  /** Whether a lane's sandbox is still this host's (see EventOutbox). */
  stillOwned?(lane: string): Promise<boolean>;
  maxPerLane?: number;
}

export class EventPublisher {
  private readonly writer: JetStreamWriter;
  readonly outbox: EventOutbox | undefined;
  private hostOrder = Date.now() * 1000;

  constructor(
    private readonly nc: NatsConnection,
    opts: PublisherOptions = {},
  ) {
    this.writer = JetStreamWriter.for(nc);
    if (opts.outboxDir && opts.health && opts.log) {
      this.outbox = new EventOutbox({
        dir: opts.outboxDir,
        health: opts.health,
        log: opts.log,
        publish: async (subject, data, msgID, timeout) => {
          await this.writer.write(subject, data, { msgId: msgID, timeoutMs: timeout });
        },
        stored: (subject, msgId) => this.lastIs(subject, msgId),
        stillOwned: opts.stillOwned,
        duplicateWindowMs: DUPLICATE_WINDOW_NS / 1e6,
        maxPerLane: opts.maxPerLane,
      });
    }
  }

  /** Stores one event; `dedupId` identifies it across retries. */
  async publish(event: Event, dedupId: string): Promise<PublishOutcome> {
    if (!this.outbox) {
      await this.writer.write(eventSubject(event), encode(event), { msgId: dedupId, timeoutMs: PUBLISH_TIMEOUT_MS });
      return 'stored';
    }
    return this.outbox.publish(laneOf(dedupId), event.seq ?? 0, eventSubject(event), encode(event), dedupId);
  }

  /** An event about a host (vc.v1.evt.host.<host>.<type>), published by `by`. */
  publishHostEvent(by: string, about: string, type: HostEventType, fields: Partial<Event>, dedupId: string): Promise<PublishOutcome> {
    const event: Event = { type, host: about, time: new Date().toISOString(), ...fields };
    const subject = subjects.hostEvent(about, type);
    if (!this.outbox) return this.writer.write(subject, encode(event), { msgId: dedupId, timeoutMs: PUBLISH_TIMEOUT_MS }).then(() => 'stored' as const);
    return this.outbox.publish(`host.${by}`, ++this.hostOrder, subject, encode(event), dedupId);
  }

  /** Whether the stream's last message on `subject` is the one with this id. */
  private async lastIs(subject: string, msgId: string): Promise<boolean> {
    const jsm = await jetstreamManager(this.nc, { checkAPI: false });
    const m = await jsm.streams.getMessage(streams.events, { last_by_subj: subject }).catch((err: unknown) => {
      if (err instanceof Error && /no message found/i.test(err.message)) return null;
      throw err;
    });
    return m?.header?.get('Nats-Msg-Id') === msgId;
  }
}
