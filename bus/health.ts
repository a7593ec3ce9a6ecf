// Whether this connection can store anything right now: connected to a server, and
// JetStream answering (its last publish did not fail). Commands that change state ask
// here first, so that they fail fast with Unavailable during an outage instead of
// making changes whose events could only wait in the outbox.
import { errors as natsErrors, type NatsConnection } from '@nats-io/transport-node';
import { JetStreamApiError, JetStreamError } from '@nats-io/jetstream';
import { unavailable, VcError } from './errors.js';

export class BusHealth {
  private connected = true;
  private jetStreamFailure: string | undefined;
  private waiters: Array<() => void> = [];
  private readonly reconnectListeners = new Set<() => void>();
  private readonly disconnectListeners = new Set<() => void>();

  constructor(nc?: NatsConnection) {
    if (nc) void this.watch(nc);
  }

  private async watch(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        this.connected = false;
        for (const l of this.disconnectListeners) l();
      }
      else if (s.type === 'reconnect') {
        this.connected = true;
        for (const l of this.reconnectListeners) l();
        this.wake();
      }
    }
  }

  /** True when connected and JetStream's last answer was not a failure. */
  get up(): boolean {
    return this.connected && this.jetStreamFailure === undefined;
  }

  get isConnected(): boolean {
    return this.connected;
  }

  /** Why nothing can be stored now, or undefined. */
  reason(): string | undefined {
    if (!this.connected) return 'the runtime is not connected to NATS';
    if (this.jetStreamFailure) return `JetStream does not store events right now (${this.jetStreamFailure})`;
    return undefined;
  }

  /** Throws Unavailable when nothing can be stored now. */
  assertUp(what: string): void {
    const why = this.reason();
    if (why) throw unavailable(`${what}: ${why}; try again when it is back`);
  }

  jetStreamFailed(err: unknown): void {
    this.jetStreamFailure = err instanceof Error ? err.message : String(err);
  }

  jetStreamWorks(): void {
    if (this.jetStreamFailure === undefined) return;
    this.jetStreamFailure = undefined;
    this.wake();
  }

  onDisconnect(listener: () => void): () => void {
    this.disconnectListeners.add(listener);
    return () => this.disconnectListeners.delete(listener);
  }

  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  /** Resolves when the connection is back, or after `ms` (a retry is due either way). */
  waitForRetry(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve();
      }, ms);
      this.waiters.push(done);
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/**
 * A failure of NATS or JetStream itself (no connection, no responders, timeout, no
 * JetStream leader) as Unavailable; other errors as they are.
 */
export function busUnavailable(err: unknown): unknown {
  if (err instanceof VcError) return err;
  if (isBusFailure(err)) return unavailable(`NATS is unavailable: ${(err as Error).message}`);
  return err;
}

export function isBusFailure(err: unknown): boolean {
  if (err instanceof natsErrors.TimeoutError || err instanceof natsErrors.ClosedConnectionError || err instanceof natsErrors.NoRespondersError) return true;
  if (err instanceof natsErrors.RequestError) return !(err.cause instanceof natsErrors.PermissionViolationError);
  if (err instanceof natsErrors.ConnectionError) return true;
  if (err instanceof JetStreamApiError) return err.status === 503 || /temporarily unavailable|no suitable peers|insufficient resources/i.test(err.message);
  if (err instanceof JetStreamError) return /timeout|no responders|not enabled|unavailable/i.test(err.message);
  return err instanceof Error && /TIMEOUT|timeout|disconnect|no responders|temporarily unavailable|CONNECTION_CLOSED/i.test(err.message);
}
