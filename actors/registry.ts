// The registry: one root sandbox actor per sandbox id, in a plain Map (never as
// children of one parent: XState copies the children map on every spawn).
import { alreadyExists, notFound } from '../bus/errors.js';
import type { SandboxRecord, SandboxStore } from '../bus/store.js';
import type { SandboxSpec } from '../machines/specs.js';
import { SandboxActor, type SandboxEnv } from './sandbox-actor.js';
import { cleanUpHalfCreated } from './reattach.js';
import { sandboxLogic } from './sandbox-logic.js';

export class SandboxRegistry {
  private readonly sandboxes = new Map<string, SandboxActor>();
  private readonly env: SandboxEnv;

  constructor(
    env: Omit<SandboxEnv, 'persist' | 'forget' | 'logic'>,
    private readonly store: SandboxStore,
  ) {
    this.env = {
      ...env,
      logic: sandboxLogic((id) => this.sandboxes.get(id)?.operations),
      persist: (sandbox) => this.persist(sandbox),
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
    const createdAt = new Date().toISOString();
    const sandbox = new SandboxActor(spec, this.env, createdAt, deadline);
    await this.store.claim({
      id: spec.id,
      host: this.env.host,
      status: { id: spec.id, state: 'creating', host: this.env.host, agent: spec.agent, createdAt },
      // A host restarted before the guest came up finds what to clean up by it.
      attach: sandbox.attachRecord(),
      updatedAt: createdAt,
    });
    // A concurrent create of the same id on this host lost the claim above.
    this.sandboxes.set(spec.id, sandbox);
    return sandbox.activate();
  }

  private async persist(sandbox: SandboxActor): Promise<void> {
    if (sandbox.deleted) {
      await this.store.remove(sandbox.id);
      return;
    }
    await this.store.put({
      id: sandbox.id,
      host: this.env.host,
      status: sandbox.status(),
      snapshot: sandbox.persistedSnapshot(),
      attach: sandbox.attachRecord(),
      updatedAt: new Date().toISOString(),
    });
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
