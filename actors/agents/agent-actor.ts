// The agent actor: the connection statechart (machines/agent.ts) in front of an agent
// driver. Every guest call goes through `call`: it connects when needed, fails fast with
// Unavailable once the agent is dead, and runs the operation under an AbortSignal bounded
// by the caller's signal, the caller's deadline and the operation's default time limit.
import { createActor, fromPromise, waitFor, type Actor } from 'xstate';
import { agentMachine } from '../../machines/agent.js';
import { deadlineExceeded, toVcError, unavailable } from '../../bus/errors.js';
import type { Agent } from './agent.js';
import { AGENT_CALL_TIMEOUTS_MS, withinDeadline, type AgentOperation } from './calls.js';

/** How a caller bounds a guest call. */
export interface CallLimits {
  /** Aborts when the caller goes away (the invoking actor stopped, the host is stopping). */
  signal?: AbortSignal;
  /** Absolute time (ms since the epoch) by which the command must be answered. */
  deadline?: number;
}

/** The time a call may take: the operation's default, or less when the deadline is nearer. */
export function callTimeoutMs(operation: AgentOperation, deadline: number | undefined, now = Date.now()): number | undefined {
  const byDefault = AGENT_CALL_TIMEOUTS_MS[operation];
  if (deadline === undefined) return byDefault;
  const left = Math.max(0, deadline - now);
  return byDefault === undefined ? left : Math.min(byDefault, left);
}

/** A driver that holds a connection says how to open it. */
export interface Connectable {
  connect(): Promise<void>;
}

const isConnectable = (agent: Agent): agent is Agent & Connectable =>
  typeof (agent as Partial<Connectable>).connect === 'function';

export class AgentActor {
  /** Created on first need: a noop sandbox never pays for it. */
  private actor?: Actor<typeof agentMachine>;

  constructor(
    readonly driver: Agent,
    private readonly sandboxId: string,
  ) {}

  get state(): string {
    return this.actor ? String(this.actor.getSnapshot().value) : 'disconnected';
  }

  private machine(): Actor<typeof agentMachine> {
    if (!this.actor) {
      const driver = this.driver;
      this.actor = createActor(
        agentMachine.provide({
          actors: {
            connect: fromPromise(async () => {
              if (isConnectable(driver)) await driver.connect();
            }),
            disconnect: fromPromise(() => driver.disconnect()),
          },
        }),
      ).start();
    }
    return this.actor;
  }

  private deadError() {
    const reason = this.actor?.getSnapshot().context.deadReason ?? 'marked dead';
    return unavailable(`agent of sandbox ${this.sandboxId} is dead (${reason}): the guest no longer answers`);
  }

  /** Waits until the agent is connected, connecting first when needed. */
  async ready(): Promise<void> {
    if (!isConnectable(this.driver) && !this.actor) return;
    const actor = this.machine();
    const snap = actor.getSnapshot();
    if (snap.value === 'connected') return;
    if (snap.value === 'dead') throw this.deadError();
    if (snap.value === 'disconnected') actor.send({ type: 'CONNECT' });
    const done = await waitFor(actor, (s) => s.value !== 'connecting' && s.value !== 'disconnecting');
    if (done.value === 'dead') throw this.deadError();
    if (done.value !== 'connected') {
      throw unavailable(`cannot reach the agent of sandbox ${this.sandboxId}: ${done.context.lastError?.message ?? 'not connected'}`);
    }
  }

  /** Runs one guest operation within its limits. */
  async call<T>(operation: AgentOperation, fn: (agent: Agent, abort: AbortSignal) => Promise<T>, limits: CallLimits = {}): Promise<T> {
    const what = `${operation} in sandbox ${this.sandboxId}`;
    const timeoutMs = callTimeoutMs(operation, limits.deadline);
    // Which limit ends the call: the command's deadline, or the operation's own.
    const byDeadline = limits.deadline !== undefined && timeoutMs !== AGENT_CALL_TIMEOUTS_MS[operation];
    const expired = byDeadline ? () => deadlineExceeded(`${what} did not finish before the command's deadline`) : undefined;
    try {
      return await withinDeadline({ what, timeoutMs, signal: limits.signal, expired }, async (abort) => {
        await this.ready();
        return fn(this.driver, abort);
      });
    } catch (err) {
      if (this.isDead()) throw this.deadError();
      throw toVcError(err);
    }
  }

  isDead(): boolean {
    return this.actor?.getSnapshot().value === 'dead';
  }

  markDead(reason: string): void {
    const actor = this.machine();
    if (actor.getSnapshot().status === 'active') actor.send({ type: 'MARK_DEAD', reason });
  }

  /**
   * A transport's close arrives after the fact, often after the agent was marked dead (a
   * final state) or released: there is nothing left to tell then.
   */
  connectionLost(message: string): void {
    if (this.actor?.getSnapshot().status === 'active') this.actor.send({ type: 'CONNECTION_LOST', message });
  }

  /** Closes the connection and stops the actor. */
  async release(): Promise<void> {
    try {
      await this.driver.disconnect();
    } finally {
      this.actor?.stop();
    }
  }
}
