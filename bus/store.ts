// Sandbox records in the vc_sandboxes KV bucket: one key per sandbox holding its owner
// host, its status and its persisted statechart snapshot. The record is also the
// sandbox -> host directory the router uses, and `claim` makes ids unique across hosts.
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { SandboxStatus } from './messages.gen.js';
import { alreadyExists } from './errors.js';
import { decodeTrusted, encode } from './codec.js';
import { streams } from './subjects.js';

export interface SandboxRecord {
  id: string;
  host: string;
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

/** Where sandbox records live. The KV implementation is the only one so far. */
export interface SandboxStore {
  /** Reserves an id for a host; AlreadyExists when any host holds it. */
  claim(record: SandboxRecord): Promise<void>;
  put(record: SandboxRecord): Promise<void>;
  get(id: string): Promise<SandboxRecord | undefined>;
  remove(id: string): Promise<void>;
  list(): Promise<SandboxRecord[]>;
}

export class KvSandboxStore implements SandboxStore {
  private constructor(private readonly kv: KV) {}

  static async open(nc: NatsConnection): Promise<KvSandboxStore> {
    return new KvSandboxStore(await new Kvm(nc).open(streams.sandboxBucket));
  }

  async claim(record: SandboxRecord): Promise<void> {
    try {
      await this.kv.create(record.id, encode(record));
    } catch (err) {
      const holder = await this.get(record.id).catch(() => undefined);
      if (holder) throw alreadyExists(`sandbox ${record.id} already exists (on host ${holder.host})`);
      throw err;
    }
  }

  async put(record: SandboxRecord): Promise<void> {
    await this.kv.put(record.id, encode(record));
  }

  async get(id: string): Promise<SandboxRecord | undefined> {
    const entry = await this.kv.get(id);
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) return undefined;
    return decodeTrusted<SandboxRecord>(entry.value);
  }

  async remove(id: string): Promise<void> {
    await this.kv.delete(id);
  }

  async list(): Promise<SandboxRecord[]> {
    // One watch delivers every record's last value in a single stream (a get per key
    // costs a round trip each: a restarted host reads all of them before it serves).
    if ((await this.kv.status()).values === 0) return [];
    const out: SandboxRecord[] = [];
    // Delete markers come too (a bucket of only removed records still ends at delta 0).
    const watch = await this.kv.watch({ key: '>' });
    for await (const entry of watch) {
      if (entry.operation === 'PUT' && entry.length > 0) out.push(decodeTrusted<SandboxRecord>(entry.value));
      if (entry.delta === 0) break;
    }
    watch.stop();
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
}

/** One change of the sandbox records: the new record, or none when it was removed. */
