// The registry: one root sandbox actor per sandbox id, in a plain Map (never as
// children of one parent: XState copies the children map on every spawn).
import { alreadyExists, notFound } from '../bus/errors.js';
import type { SandboxStore } from '../bus/store.js';
import type { SandboxSpec } from '../machines/specs.js';
import { SandboxActor, type SandboxEnv } from './sandbox-actor.js';
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
    await this.store.claim({
      id: spec.id,
      host: this.env.host,
      status: { id: spec.id, state: 'creating', host: this.env.host, agent: spec.agent, createdAt },
      updatedAt: createdAt,
    });
    // A concurrent create of the same id on this host lost the claim above.
    const sandbox = new SandboxActor(spec, this.env, createdAt, deadline);
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
      updatedAt: new Date().toISOString(),
    });
  }

  /** Stops every actor without touching guests (host shutdown). */
  async detachAll(): Promise<void> {
    await Promise.all([...this.sandboxes.values()].map((s) => s.detach()));
    this.sandboxes.clear();
  }
}
