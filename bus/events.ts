// The event publisher: every lifecycle event goes into the VC_EVENTS JetStream stream,
// with a Nats-Msg-Id so that a publish retried after a reconnect is stored once.
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Event } from './messages.gen.js';
import { encode } from './codec.js';
import { subjects } from './subjects.js';

export function eventSubject(e: Pick<Event, 'sandboxId' | 'containerId' | 'type'>): string {
  const type = e.type ?? 'unknown';
  return e.containerId ? subjects.containerEvent(e.sandboxId!, e.containerId, type) : subjects.sandboxEvent(e.sandboxId!, type);
}

export class EventPublisher {
  private readonly js: JetStreamClient;
  constructor(nc: NatsConnection) {
    this.js = jetstream(nc);
  }

  /** Stores one event; `dedupId` identifies it across retries. */
  async publish(event: Event, dedupId: string): Promise<void> {
    await this.js.publish(eventSubject(event), encode(event), { msgID: dedupId, timeout: 10_000 });
  }
}
