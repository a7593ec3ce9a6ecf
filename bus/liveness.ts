// Host liveness: every host heartbeats its entry in the vc_hosts bucket and watches
// everyone's (a KV watch learns of hosts; each tick also reads every entry, as a watch
// can stall for seconds while a cluster elects a new leader for the bucket). A host
// whose entry has not changed for `lostAfterMs` (measured on the watcher's own
// monotonic clock, so clocks need not agree) is counted lost: the first
// watcher to notice marks its entry (a write at the revision it saw, so only one
// watcher does, and a beat in between wins) and publishes vc.v1.evt.host.<host>.lost.
// A host that finds its own entry marked (its next beat, written at its own last
// revision, is refused) was lost: it checks its sandboxes against their records.
import type { KV, KvEntry } from '@nats-io/kv';
import type { Logger } from 'pino';
import { decodeTrusted, encode } from './codec.js';
import type { BusHealth } from './health.js';
import type { SandboxStatus } from './messages.gen.js';

/** A host's entry in vc_hosts. */
export interface HostEntry {
  host: string;
  version: string;
  started: string;
  /** When it last beat (its own clock; informative). */
  beatAt?: string;
  /** Set by another host once this one stopped beating, or by itself when it stops. */
  lost?: { since: string; by: string; reason: string };
}

export interface LivenessOptions {
  host: string;
  version: string;
  started: string;
  /** After how long without a beat a host counts as lost. */
  lostAfterMs: number;
  health: BusHealth;
  log: Logger;
  /** Another host was counted lost by this one. */
  declared(entry: HostEntry): void;
  /** This host finds it was counted lost while it could not beat. */
  wasLost(entry: HostEntry): void;
}

export const DEFAULT_HOST_LOST_AFTER_MS = 15_000;

/** What a command about a sandbox of that host is told: it is lost, since when. */
export interface LostHost {
  host: string;
  since: string;
  reason: string;
}

interface Seen {
  entry: HostEntry;
  revision: number;
  /** performance.now() when this watcher last saw the entry change. */
  at: number;
}

export class HostLiveness {
  private readonly seen = new Map<string, Seen>();
  private revision: number | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private watcher: { stop(): void } | undefined;
  private readonly beatEveryMs: number;
  /** No verdict on others before this (performance.now()): a fresh start or reconnect sees everyone anew. */
  private graceUntil = 0;
  private beating: Promise<void> | undefined;
  private stopped = false;
  /** performance.now() of this host's last beat that the bucket took. */
  private beatOkAt = 0;
  /** performance.now() of the last round that read every entry. */
  private viewAt = 0;

  constructor(
    private readonly kv: KV,
    private readonly opts: LivenessOptions,
  ) {
    this.beatEveryMs = Math.max(100, Math.floor(opts.lostAfterMs / 4));
  }

  async start(): Promise<void> {
    this.graceUntil = performance.now() + this.opts.lostAfterMs;
    const before = hostEntry(await this.kv.get(this.opts.host).catch(() => null));
    this.revision = await this.kv.put(this.opts.host, encode(this.entry()));
    this.beatOkAt = performance.now();
    if (before?.lost && before.lost.by !== this.opts.host) this.opts.wasLost(before);
    const iter = await this.kv.watch({ key: '>' });
    this.watcher = iter;
    void (async () => {
      for await (const e of iter) this.observe(e);
    })().catch((err: unknown) => this.opts.log.warn({ err }, 'host watch ended'));
    this.opts.health.onReconnect(() => {
      this.graceUntil = performance.now() + this.opts.lostAfterMs;
    });
    this.timer = setInterval(() => void this.tick(), this.beatEveryMs);
    this.timer.unref?.();
  }

  /** The lost host, or undefined while it is alive (or unknown). */
  lost(host: string): LostHost | undefined {
    const s = this.seen.get(host);
    if (!s?.entry.lost) return undefined;
    return { host, since: s.entry.lost.since, reason: s.entry.lost.reason };
  }

  /** When this host last saw `host` beat (on its own clock), or undefined when it knows no beat of it. */
  lastBeat(host: string): string | undefined {
    const s = this.seen.get(host);
    return s && new Date(Date.now() - (performance.now() - s.at)).toISOString();
  }

  /**
   * Why a command for a sandbox of `host` cannot reach it now: the host is lost, or has
   * missed beats for over half the lost time (it is probably gone; the verdict follows).
   */
  unreachable(host: string): string | undefined {
    const lost = this.lost(host);
    if (lost) return `host ${host} is lost since ${lost.since} (${lost.reason})`;
    const s = this.seen.get(host);
    const now = performance.now();
    if (!s || host === this.opts.host || now < this.graceUntil) return undefined;
    // Silence means something only when this host's own view is fresh and its own
    // beats are taken (while the bucket elects a leader, nobody's are).
    if (now - this.viewAt > 2 * this.beatEveryMs || now - this.beatOkAt > 2 * this.beatEveryMs) return undefined;
    const silent = now - s.at;
    if (silent > this.opts.lostAfterMs / 2) return `host ${host} has not sent a heartbeat for ${Math.round(silent)} ms`;
    return undefined;
  }

  /** Marks this host's entry as stopped (a clean shutdown): its sandboxes are unreachable until it is back. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.watcher?.stop();
    await this.beating;
    const entry: HostEntry = { ...this.entry(), lost: { since: new Date().toISOString(), by: this.opts.host, reason: 'stopped' } };
    await this.kv.put(this.opts.host, encode(entry)).catch(() => {});
  }

  private entry(): HostEntry {
    return { host: this.opts.host, version: this.opts.version, started: this.opts.started, beatAt: new Date().toISOString() };
  }

  private observe(e: KvEntry): void {
    if (e.operation !== 'PUT' || e.length === 0) {
      this.seen.delete(e.key);
      return;
    }
    // The watch may deliver an entry the tick already read, or an older one.
    const known = this.seen.get(e.key);
    if (known && known.revision >= e.revision) return;
    const entry = decodeTrusted<HostEntry>(e.value);
    this.seen.set(e.key, { entry, revision: e.revision, at: performance.now() });
  }

  private async tick(): Promise<void> {
    if (this.stopped || this.beating) return;
    this.beating = (async () => {
      // Apart: a slow beat (a bucket electing its leader) must not leave the view stale.
      const [, fresh] = await Promise.all([this.beat(), this.refresh()]);
      if (fresh) await this.judge();
    })()
      .catch((err: unknown) => this.opts.log.warn({ err }, 'heartbeat round failed'))
      .finally(() => (this.beating = undefined));
  }

  private async beat(): Promise<void> {
    if (!this.opts.health.isConnected) return;
    try {
      this.revision = await this.kv.update(this.opts.host, encode(this.entry()), this.revision ?? 0);
      this.beatOkAt = performance.now();
    } catch (err) {
      if (!/wrong last sequence/i.test(String((err as Error)?.message))) {
        this.opts.log.warn({ err }, 'heartbeat not stored');
        return;
      }
      // Someone wrote our entry: we were counted lost while we could not beat.
      const mark = hostEntry(await this.kv.get(this.opts.host).catch(() => null));
      this.revision = await this.kv.put(this.opts.host, encode(this.entry())).catch(() => undefined);
      this.opts.log.warn({ lost: mark?.lost }, 'this host was counted lost meanwhile: checking its sandboxes');
      this.opts.wasLost(mark ?? this.entry());
    }
  }

  /** Reads every known host's entry: a changed revision is a beat. False when the bucket does not answer. */
  private async refresh(): Promise<boolean> {
    try {
      for (const [host, s] of [...this.seen]) {
        if (host === this.opts.host) continue;
        const e = await this.kv.get(host);
        if (!e || e.operation !== 'PUT' || e.length === 0) this.seen.delete(host);
        else if (e.revision !== s.revision) this.observe(e);
      }
      this.viewAt = performance.now();
      return true;
    } catch (err) {
      this.opts.log.warn({ err }, 'host entries not read');
      return false;
    }
  }

  /** Counts lost every host silent for too long, unless this host's own view is stale. */
  private async judge(): Promise<void> {
    const now = performance.now();
    if (now < this.graceUntil || !this.opts.health.isConnected) return;
    // A host that cannot beat itself cannot tell others' silence from its own trouble.
    if (now - this.beatOkAt > this.opts.lostAfterMs / 2) return;
    for (const [host, s] of this.seen) {
      if (host === this.opts.host || s.entry.lost || now - s.at <= this.opts.lostAfterMs) continue;
      const lost: HostEntry = { ...s.entry, lost: { since: new Date().toISOString(), by: this.opts.host, reason: `no heartbeat for ${Math.round(now - s.at)} ms` } };
      try {
        // At the revision we saw: a beat in between, or another watcher's mark, wins.
        const revision = await this.kv.update(host, encode(lost), s.revision);
        this.seen.set(host, { entry: lost, revision, at: now });
        this.opts.log.warn({ lostHost: host, reason: lost.lost!.reason }, 'host lost');
        this.opts.declared(lost);
      } catch (err) {
        if (!/wrong last sequence/i.test(String((err as Error)?.message))) this.opts.log.warn({ err, lostHost: host }, 'could not mark a host lost');
      }
    }
  }
}

/** A host entry read from a KV entry, when it is one. */
export function hostEntry(e: KvEntry | null): HostEntry | undefined {
  return e && e.operation === 'PUT' && e.length ? decodeTrusted<HostEntry>(e.value) : undefined;
}

/** How a sandbox of a lost host reads in `list` and `status`: state `lost`, with the host and since when. */
export function lostStatus(status: SandboxStatus, lost: LostHost): SandboxStatus {
  return { ...status, state: 'lost', host: lost.host, lostSince: lost.since };
}
