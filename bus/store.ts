// Sandbox records in the vc_sandboxes KV bucket: one key per sandbox holding its owner
// host, its status and its persisted statechart snapshot. The record is also the
// sandbox -> host directory the router uses, and `claim` makes ids unique across hosts.
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { SandboxStatus } from './messages.gen.js';
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { alreadyExists } from './errors.js';
import { busUnavailable, isBusFailure } from './health.js';
import { decodeTrusted, encode } from './codec.js';
import { natsSubjects, streams } from './subjects.js';
import { JetStreamWriter } from './jetstream-writer.js';

export interface SandboxRecord {
  id: string;
  host: string;
  /** The sandbox actor's incarnation (its uid): tells this life of the id from a later one. */
  incarnation?: string;
  status: SandboxStatus;
  /** The sandbox actor's persisted snapshot, for reattaching after a restart. */
  snapshot?: unknown;
  /** What a restarted host needs to find the guest again (set from the claim on). */
  attach?: AttachRecord;
  updatedAt: string;
}

/** Where a sandbox's guest is: what a host restarted on the same state reattaches to. */
export interface AttachRecord {
  /** The sandbox actor's incarnation (event de-duplication ids, cgroup names). */
  incarnation: string;
  runDir: string;
  /** The sandbox's backend type (a record caught creating has no snapshot to say it). */
  backend: string;
  /** Where the guest agent listens (sockets, grpc address, shared directory). */
  endpoint?: Record<string, unknown>;
  /** Host pid of the guest's first process, when it has one. */
  guestPid?: number;
}

/** A record and its KV revision (what a later write must name to replace it). */
export interface RecordEntry {
  record: SandboxRecord;
  revision: number;
}

/**
 * Whether a sandbox record is still the one a host holds: `mine` (same host and
 * incarnation), `forgotten` (no record: an operator ran `sandbox forget`), `replaced`
 * (the id now names another sandbox, or another host's).
 */
export type Ownership = 'mine' | 'forgotten' | 'replaced';

/** A write that named a revision the record no longer has: someone else wrote it since. */
export class StaleRevisionError extends Error {
  override readonly name = 'StaleRevisionError';
}

/** Where sandbox records live. The KV implementation is the only one so far. */
export interface SandboxStore {
  /** Reserves an id for a host; AlreadyExists when any host holds it. Resolves with the revision. */
  claim(record: SandboxRecord): Promise<number>;
  /**
   * Replaces the record at `revision` (StaleRevisionError when it has another), or
   * writes it unconditionally without one. Resolves with the new revision.
   */
  put(record: SandboxRecord, revision?: number): Promise<number>;
  get(id: string): Promise<SandboxRecord | undefined>;
  entry(id: string): Promise<RecordEntry | undefined>;
  /** Removes the record; at `revision` only, when given (StaleRevisionError otherwise). */
  remove(id: string, revision?: number): Promise<void>;
  list(): Promise<SandboxRecord[]>;
}

/** What a host calls to learn whether a record it finds (or keeps) is still its own. */
export async function ownershipOf(store: Pick<SandboxStore, 'entry'>, id: string, host: string, incarnation: string): Promise<{ ownership: Ownership; entry?: RecordEntry }> {
  const entry = await store.entry(id);
  if (!entry) return { ownership: 'forgotten' };
  const { record } = entry;
  // Records written before incarnations were stored name none: the host decides.
  const same = record.host === host && (record.incarnation === undefined || record.incarnation === incarnation);
  return { ownership: same ? 'mine' : 'replaced', entry };
}

const isStale = (err: unknown) => err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  || (err instanceof Error && /wrong last sequence/i.test(err.message));

/** How long a record write waits for the bucket's acknowledgement. */
const WRITE_TIMEOUT_MS = 5_000;

export class KvSandboxStore implements SandboxStore {
  private constructor(
    private readonly kv: KV,
    /** Writes go through the connection's JetStreamWriter (reads through the KV client). */
    private readonly writer: JetStreamWriter,
  ) {}

  static async open(nc: NatsConnection): Promise<KvSandboxStore> {
    return new KvSandboxStore(await new Kvm(nc).open(streams.sandboxBucket), JetStreamWriter.for(nc));
  }

  private async write(id: string, data: Uint8Array, expectedLastSubjectSeq?: number, kvOperation?: 'DEL'): Promise<number> {
    const ack = await this.writer.write(natsSubjects.kvKey(streams.sandboxBucket, id), data, { expectedLastSubjectSeq, kvOperation, timeoutMs: WRITE_TIMEOUT_MS });
    return ack.seq;
  }

  async claim(record: SandboxRecord): Promise<number> {
    const data = encode(record);
    try {
      // Only when the key has no message yet, or (below) its last is a delete marker.
      return await this.write(record.id, data, 0);
    } catch (err) {
      if (!isStale(err)) throw busUnavailable(err);
    }
    const last = await this.kv.get(record.id).catch((err: unknown) => {
      throw busUnavailable(err);
    });
    if (last && last.operation !== 'PUT') {
      try {
        return await this.write(record.id, data, last.revision);
      } catch (err) {
        if (!isStale(err)) throw busUnavailable(err);
      }
    }
    const holder = await this.get(record.id).catch(() => undefined);
    throw alreadyExists(`sandbox ${record.id} already exists${holder ? ` (on host ${holder.host})` : ''}`);
  }

  async put(record: SandboxRecord, revision?: number): Promise<number> {
    try {
      return await this.write(record.id, encode(record), revision);
    } catch (err) {
      if (isStale(err)) throw new StaleRevisionError(`record ${record.id} is no longer at revision ${revision}`);
      throw busUnavailable(err);
    }
  }

  async get(id: string): Promise<SandboxRecord | undefined> {
    return (await this.entry(id))?.record;
  }

  async entry(id: string): Promise<RecordEntry | undefined> {
    const entry = await this.kv.get(id).catch((err: unknown) => {
      throw busUnavailable(err);
    });
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) return undefined;
    return { record: decodeTrusted<SandboxRecord>(entry.value), revision: entry.revision };
  }

  async remove(id: string, revision?: number): Promise<void> {
    try {
      await this.write(id, new Uint8Array(), revision, 'DEL');
    } catch (err) {
      if (isStale(err)) throw new StaleRevisionError(`record ${id} is no longer at revision ${revision}`);
      throw busUnavailable(err);
    }
  }

  async list(): Promise<SandboxRecord[]> {
    // Listing takes a consumer, which a cluster that just lost a server may fail
    // to set up at the first try; reading is safe to repeat.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.listOnce();
      } catch (err) {
        if (attempt >= 3 || !isBusFailure(err)) throw busUnavailable(err);
      }
    }
  }

  private async listOnce(): Promise<SandboxRecord[]> {
    // One watch delivers every record's last value in a single stream (a get per key
    // costs a round trip each: a restarted host reads all of them before it serves).
    if ((await this.kv.status()).values === 0) return [];
    const out: SandboxRecord[] = [];
    // Delete markers come too (a bucket of only removed records still ends at delta 0).
    const watch = await this.kv.watch({ key: '>' });
    try {
      for await (const entry of watch) {
        if (entry.operation === 'PUT' && entry.length > 0) out.push(decodeTrusted<SandboxRecord>(entry.value));
        if (entry.delta === 0) break;
      }
    } finally {
      watch.stop();
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
}
