// Connecting to NATS and setting up what the runtime stores there: the events stream
// and the KV buckets. Idempotent: every host runs it at start.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, RetentionPolicy, StorageType, DiscardPolicy } from '@nats-io/jetstream';
import { streams, subjects } from './subjects.js';

export interface ConnectOptions {
  servers: string | string[];
  name?: string;
  /** Keep retrying while the server restarts (a host); a CLI gives up early. */
  persistent?: boolean;
}

export function connectBus(opts: ConnectOptions): Promise<NatsConnection> {
  return connect({
    servers: opts.servers,
    name: opts.name ?? 'virtactors',
    maxReconnectAttempts: opts.persistent ? -1 : 10,
    reconnectTimeWait: 250,
    waitOnFirstConnect: !!opts.persistent,
    // Async traces build an Error (with a stack) per request; at thousands of requests
    // per second that is most of the client's CPU.
    noAsyncTraces: true,
  });
}

export interface StreamSettings {
  /** Replicas of the stream and buckets (1 on a single server, 3 on a cluster). */
  replicas?: number;
  /** How long events are kept, in seconds. Default 7 days. */
  eventMaxAgeSec?: number;
}

const DUPLICATE_WINDOW_NS = 2 * 60 * 1e9;

/**
 * Creates the events stream and the KV buckets when they do not exist yet. A cluster
 * that has just started needs a few seconds to elect its JetStream leader: retry until
 * `waitMs` has passed.
 */
export async function ensureBusState(nc: NatsConnection, settings: StreamSettings = {}, waitMs = 30_000): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      await ensureOnce(nc, settings);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

async function ensureOnce(nc: NatsConnection, settings: StreamSettings): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const replicas = settings.replicas ?? 1;
  try {
    await jsm.streams.info(streams.events);
  } catch {
    await jsm.streams
      .add({
        name: streams.events,
        subjects: [subjects.eventsAll()],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        discard: DiscardPolicy.Old,
        max_age: (settings.eventMaxAgeSec ?? 7 * 24 * 3600) * 1e9,
        duplicate_window: DUPLICATE_WINDOW_NS,
        num_replicas: replicas,
      })
      .catch(async (err) => {
        // Another host created it in between.
        await jsm.streams.info(streams.events).catch(() => {
          throw err;
        });
      });
  }
  const { Kvm } = await import('@nats-io/kv');
  const kvm = new Kvm(nc);
  await kvm.create(streams.sandboxBucket, { history: 1, replicas });
  await kvm.create(streams.hostBucket, { history: 1, replicas, ttl: 0 });
}
