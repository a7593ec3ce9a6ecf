// The registry: one root sandbox actor per sandbox id, in a plain Map (never as
// children of one parent: XState copies the children map on every spawn).
import { alreadyExists, notFound, resourceExhausted, unavailable } from '../bus/errors.js';
import { ownershipOf, StaleRevisionError, type Ownership, type SandboxRecord, type SandboxStore } from '../bus/store.js';
import { encode } from '../bus/codec.js';
import type { SandboxSpec } from '../machines/specs.js';
import { SandboxActor, type SandboxEnv } from './sandbox-actor.js';
import { cleanUpHalfCreated } from './reattach.js';
import { sandboxLogic } from './sandbox-logic.js';

export interface RegistryHooks {
  /** Why no record can be written now (no connection), or undefined: a write then fails at once and is retried. */
  busDown?(): string | undefined;
  /** A sandbox whose record was no longer this host's had its guest stopped. */
  reaped?(sandbox: SandboxActor, ownership: Exclude<Ownership, 'mine'>, error?: unknown): void;
  /** How many sandboxes this host holds at most (default DEFAULT_MAX_SANDBOXES). */
  maxSandboxes?: number;
  /** The largest record the bus takes (its max_payload, less the KV headers); none: unchecked. */
  maxRecordBytes?: number;
}

/**
 * A host's sandboxes are bounded, noop ones too: each is an actor, a record and its
 * events, and a caller allowed to create them could otherwise make them until the host
 * runs out of memory. An idle noop sandbox takes ~9 KiB of heap; a guest's own cost is
 * bounded by the memory check at its boot.
 */
export const DEFAULT_MAX_SANDBOXES = 16_384;

export class SandboxRegistry {
  private readonly sandboxes = new Map<string, SandboxActor>();
  private readonly env: SandboxEnv;
  /** The KV revision each sandbox's record was last written at: the next write names it. */
  private readonly revisions = new WeakMap<SandboxActor, number>();
  /** Sandboxes whose record this host removed (deleted): nothing more is written for them. */
  private readonly removed = new WeakSet<SandboxActor>();
  /** Outbox lanes of sandboxes whose record turned out not to be this host's. */
  private readonly disownedLanes = new Set<string>();
  /** Creates between the check of the limit and their place in the map (the claim's round trip). */
  private claiming = 0;

  constructor(
    env: Omit<SandboxEnv, 'persist' | 'forget' | 'logic' | 'recordRoom'>,
    private readonly store: SandboxStore,
    private readonly hooks: RegistryHooks = {},
  ) {
    this.env = {
      ...env,
      logic: sandboxLogic((id) => this.sandboxes.get(id)?.operations),
      persist: (sandbox) => this.persist(sandbox),
      recordRoom: (sandbox) => this.recordRoom(sandbox),
      forget: (sandbox) => {
        if (this.sandboxes.get(sandbox.id) === sandbox) this.sandboxes.delete(sandbox.id);
      },
    };
  }

  get size(): number {
    return this.sandboxes.size;
  }

  has(id: string): boolean {
    return this.sandboxes.has(id);
  }

  get(id: string): SandboxActor {
    const sandbox = this.sandboxes.get(id);
    if (!sandbox || sandbox.deleted) throw notFound(`sandbox ${id} does not exist`);
    return sandbox;
  }

  values(): IterableIterator<SandboxActor> {
    return this.sandboxes.values();
  }

  /** Claims the id cluster-wide, then starts the sandbox actor (which boots the guest). */
  async create(spec: SandboxSpec, deadline?: number): Promise<SandboxActor> {
    if (this.sandboxes.has(spec.id)) throw alreadyExists(`sandbox ${spec.id} already exists`);
    // Creates still claiming their id count too: concurrent ones would all pass the check.
    const max = this.hooks.maxSandboxes ?? DEFAULT_MAX_SANDBOXES;
    if (this.sandboxes.size + this.claiming >= max) {
      throw resourceExhausted(`host ${this.env.host} holds ${this.sandboxes.size + this.claiming} sandboxes, its most (VC_MAX_SANDBOXES=${max}): delete one, or create it on another host`);
    }
    const createdAt = new Date().toISOString();
    // Not started before the claim: constructing touches nothing outside the process.
    const sandbox = new SandboxActor(spec, this.env, createdAt, deadline);
    this.claiming++;
    const revision = await this.store.claim({
      id: spec.id,
      host: this.env.host,
      incarnation: sandbox.uid,
      status: { id: spec.id, state: 'creating', host: this.env.host, agent: spec.agent, createdAt },
      // A host restarted before the guest came up finds what to clean up by it.
      attach: sandbox.attachRecord(),
      updatedAt: createdAt,
    }).finally(() => this.claiming--);
    // A concurrent create of the same id on this host lost the claim above.
    this.revisions.set(sandbox, revision);
    this.sandboxes.set(spec.id, sandbox);
    return sandbox.activate();
  }

  private recordOf(sandbox: SandboxActor): SandboxRecord {
    return {
      id: sandbox.id,
      host: this.env.host,
      incarnation: sandbox.uid,
      status: sandbox.status(),
      snapshot: sandbox.persistedSnapshot(),
      attach: sandbox.attachRecord(),
      updatedAt: new Date().toISOString(),
    };
  }

  /** Bytes the sandbox's record may still grow by before the bus refuses it, or undefined when unchecked. */
  private recordRoom(sandbox: SandboxActor): number | undefined {
    const max = this.hooks.maxRecordBytes;
    return max === undefined ? undefined : max - encode(this.recordOf(sandbox)).byteLength;
  }

  /**
   * Names the revision a sandbox's record is at, for a sandbox loaded from its record
   * (reattach): its next write replaces exactly that one. Without it, the first write
   * reads the record and checks that it is still this sandbox's.
   */
  adoptRevision(sandbox: SandboxActor, revision: number): void {
    this.revisions.set(sandbox, revision);
  }

  /**
   * Writes the sandbox's record at the revision it was last written at, so that a stale
   * writer (this host, back after being counted lost) never overwrites a newer record:
   * when the record moved on and is no longer this incarnation's, the sandbox is let go
   * (see disown). Bus failures reject: the journal retries.
   */
  private async persist(sandbox: SandboxActor): Promise<void> {
    if (this.disownedLanes.has(sandbox.journal.lane) || this.removed.has(sandbox)) return;
    const down = this.hooks.busDown?.();
    if (down) throw unavailable(down);
    for (let attempt = 0; ; attempt++) {
      let revision = this.revisions.get(sandbox);
      if (revision === undefined) {
        const { ownership, entry } = await ownershipOf(this.store, sandbox.id, this.env.host, sandbox.uid);
        if (ownership !== 'mine') {
          if (!sandbox.deleted) void this.disown(sandbox, ownership);
          return;
        }
        revision = entry!.revision;
      }
      try {
        if (sandbox.deleted) {
          await this.store.remove(sandbox.id, revision);
          this.revisions.delete(sandbox);
          // Writes asked for after the delete (its last events) have nothing left to write.
          this.removed.add(sandbox);
        } else {
          this.revisions.set(sandbox, await this.store.put(this.recordOf(sandbox), revision));
        }
        return;
      } catch (err) {
        if (!(err instanceof StaleRevisionError) || attempt > 0) throw err;
        // Our own write whose acknowledgement was lost, or someone else's: look.
        this.revisions.delete(sandbox);
      }
    }
  }

  /** Whether a sandbox record (found on start, or held) is still this host's: the hook reattach calls. */
  ownership(id: string, incarnation: string) {
    return ownershipOf(this.store, id, this.env.host, incarnation);
  }

  /** Whether an outbox lane's events may still be stored (bus/outbox.ts). */
  async laneOwned(lane: string): Promise<boolean> {
    if (this.disownedLanes.has(lane)) return false;
    const [id, incarnation] = lane.split('.') as [string, string];
    const held = this.sandboxes.get(id);
    if (held && held.uid === incarnation) {
      const { ownership } = await this.ownership(id, incarnation);
      if (ownership !== 'mine') void this.disown(held, ownership);
      return ownership === 'mine';
    }
    // A sandbox this host deleted (its record gone) still stores its last events; only
    // an id that names another sandbox now keeps them out.
    return (await this.ownership(id, incarnation)).ownership !== 'replaced';
  }

  /**
   * Checks every sandbox held against its record (after this host was counted lost):
   * those forgotten or replaced meanwhile are let go. Resolves with the ids let go.
   */
  async reconcile(): Promise<string[]> {
    const gone: string[] = [];
    for (const sandbox of [...this.sandboxes.values()]) {
      if (this.disownedLanes.has(sandbox.journal.lane) || sandbox.deleted) continue;
      const { ownership } = await this.ownership(sandbox.id, sandbox.uid);
      if (ownership === 'mine') continue;
      gone.push(sandbox.id);
      await this.disown(sandbox, ownership);
    }
    return gone;
  }

  /**
   * The record is no longer this sandbox's (forgotten by an operator while this host was
   * lost, or the id reused): stop its guest without writing anything for it (its events
   * would land among the next incarnation's), drop it, and tell the host.
   */
  private async disown(sandbox: SandboxActor, ownership: Exclude<Ownership, 'mine'>): Promise<void> {
    if (this.disownedLanes.has(sandbox.journal.lane)) return;
    this.disownedLanes.add(sandbox.journal.lane);
    sandbox.journal.silence();
    sandbox.log.warn({ ownership }, 'sandbox record is no longer this host\'s: stopping its guest');
    let error: unknown;
    try {
      await sandbox.commands.exclusive(() => sandbox.commands.delete(true));
    } catch (err) {
      error = err;
      sandbox.log.error({ err }, 'guest of a disowned sandbox not stopped cleanly');
      await sandbox.detach().catch(() => {});
    }
    if (this.sandboxes.get(sandbox.id) === sandbox) this.sandboxes.delete(sandbox.id);
    this.hooks.reaped?.(sandbox, ownership, error);
  }

  /** Retries every record write that failed (the connection is back). */
  retryRecords(): void {
    for (const sandbox of this.sandboxes.values()) sandbox.journal.retryRecord();
  }

  /**
   * A restarted host: every record this host owns is restored and reattached to its guest
   * (or, caught while creating, cleaned up). Resolves once every sandbox answers.
   */
  async reattachAll(records: SandboxRecord[], concurrency = 32): Promise<{ reattached: number; cleanedUp: number; failed: number }> {
    const mine = records.filter((r) => r.host === this.env.host && !this.sandboxes.has(r.id));
    const counts = { reattached: 0, cleanedUp: 0, failed: 0 };
    let next = 0;
    const worker = async () => {
      while (next < mine.length) {
        const record = mine[next++]!;
        try {
          counts[(await this.reattach(record)) ? 'reattached' : 'cleanedUp']++;
        } catch (err) {
          counts.failed++;
          this.env.log.error({ err, sandboxId: record.id }, 'reattach failed');
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, mine.length) }, worker));
    return counts;
  }

  /** One record: true when its sandbox is back, false when it was caught creating and cleaned up. */
  private async reattach(record: SandboxRecord): Promise<boolean> {
    const snap = record.snapshot as { context?: { spec?: SandboxSpec } } | undefined;
    const spec = snap?.context?.spec;
    if (!spec || !record.attach || record.status.state === 'creating') {
      // Never created (no snapshot before the create event): whatever the boot started goes.
      await cleanUpHalfCreated(record, this.env);
      await this.store.remove(record.id);
      this.env.log.warn({ sandboxId: record.id }, 'reattach: the sandbox was being created when its host stopped: cleaned up');
      return false;
    }
    const sandbox = new SandboxActor(spec, this.env, record.status.createdAt, undefined, { snapshot: record.snapshot, attach: record.attach });
    this.sandboxes.set(spec.id, sandbox);
    await sandbox.reattach();
    return true;
  }

  /** Stops every actor without touching guests (host shutdown). */
  async detachAll(): Promise<void> {
    await Promise.all([...this.sandboxes.values()].map((s) => s.detach()));
    this.sandboxes.clear();
  }
}
