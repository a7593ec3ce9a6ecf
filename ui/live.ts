// The bus side of the page: the sandbox list (the list command, then each live event
// applied as it arrives, with a full list again shortly after any change and every few
// seconds), the hosts (asked through service discovery every few seconds) and, per
// viewed sandbox, its events (replayed from VC_EVENTS, then followed) and actor
// snapshots. Everything goes through what a viewer may read: commands that read, live
// event and inspection subjects, message gets; no KV watch (clients create no consumer).
import type { Logger } from 'pino';
import type { VcClient } from '../bus/client.js';
import { decodeTrusted } from '../bus/codec.js';
import { hostOf, publishesInspection } from '../bus/service-discovery.js';
import { subjects } from '../bus/subjects.js';
import type * as Bus from '../bus/messages.gen.js';
import type { HostSummary, ListMessage, SandboxMessage, SandboxSummary } from './protocol.js';

export function summarize(s: Bus.SandboxStatus): SandboxSummary {
  const out: SandboxSummary = {
    id: s.id ?? '',
    host: s.host ?? '',
    state: s.state ?? '',
    agent: s.agent ?? '',
    backend: s.backend ?? '',
    containers: s.containers?.length ?? 0,
    createdAt: s.createdAt ?? '',
  };
  if (s.failureReason) {
    out.failureReason = s.failureReason;
    out.failureMessage = s.failureMessage ?? '';
    out.failedAt = s.failedAt ?? '';
  }
  return out;
}

type Listener = (m: ListMessage) => void;

/** How soon after a change the whole list is read again, and how often anyway. */
const REFRESH_AFTER_CHANGE_MS = 150;
const REFRESH_EVERY_MS = 3000;

/** The list every page shares: one event subscription and one host poll per `ui` process. */
export class LiveList {
  private readonly sandboxes = new Map<string, SandboxSummary>();
  private hosts: HostSummary[] = [];
  private readonly listeners = new Set<Listener>();
  private pending: ListMessage & { kind: 'sandboxes' } = { kind: 'sandboxes', upsert: [], remove: [] };
  private flushQueued = false;
  private events?: { unsubscribe(): void };
  private timer?: NodeJS.Timeout;
  private refreshTimer?: NodeJS.Timeout;
  private refreshDue?: number;
  private refreshAgain = false;
  private refreshing?: Promise<void>;
  private stopped = false;

  constructor(
    private readonly client: VcClient,
    private readonly hostPollMs = 2000,
    private readonly log?: Logger,
    /** How often the whole list is read when nothing happens. */
    private readonly refreshEveryMs = REFRESH_EVERY_MS,
  ) {}

  async start(): Promise<void> {
    // Subscribed before the first list: no change between the two is missed.
    this.events = this.client.nc.subscribe(subjects.eventsAll(), {
      callback: (err, m) => {
        if (!err) this.applyEvent(decodeTrusted<Bus.Event>(m.data));
      },
    });
    await this.refresh();
    const poll = async () => {
      const found = await this.client.discover('INFO', 250).catch(() => undefined);
      if (found) {
        const hosts = found
          .map((h) => ({ id: hostOf(h), version: String(h.version ?? ''), inspect: publishesInspection(h) }))
          .sort((a, b) => a.id.localeCompare(b.id));
        if (JSON.stringify(hosts) !== JSON.stringify(this.hosts)) {
          this.hosts = hosts;
          this.broadcast({ kind: 'hosts', hosts });
        }
      }
      if (!this.stopped) this.timer = setTimeout(() => void poll(), this.hostPollMs);
    };
    await poll();
  }

  /** A live event moves its sandbox's row at once; the next full list settles the rest. */
  private applyEvent(e: Bus.Event): void {
    const id = e.sandboxId ?? '';
    const row = this.sandboxes.get(id);
    if (!e.containerId && e.type === 'delete') {
      if (this.sandboxes.delete(id)) this.pending.remove.push(id);
    } else if (!e.containerId && row && e.state) {
      const next = { ...row, state: e.state };
      if (e.type === 'fail') Object.assign(next, { failureReason: e.reason ?? '', failureMessage: e.message ?? '', failedAt: e.time ?? '' });
      this.sandboxes.set(id, next);
      this.pending.upsert.push(next);
    }
    this.queueFlush();
    this.scheduleRefresh(REFRESH_AFTER_CHANGE_MS);
  }

  /** Reads the list again within `ms`: a sooner request replaces a later one, never the reverse. */
  private scheduleRefresh(ms: number): void {
    if (this.stopped) return;
    const due = performance.now() + ms;
    if (this.refreshTimer && this.refreshDue !== undefined && this.refreshDue <= due) return;
    clearTimeout(this.refreshTimer);
    this.refreshDue = due;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      this.refreshDue = undefined;
      void this.refresh();
    }, ms);
  }

  /** Reads the whole list and sends what changed. */
  private refresh(): Promise<void> {
    // A read already under way may have been answered before the change that asks for this one.
    if (this.refreshing) this.refreshAgain = true;
    this.refreshing ??= (async () => {
      try {
        const list = await this.client.listSandboxes({}, { timeoutMs: 5000 });
        const seen = new Set<string>();
        for (const s of list) {
          const row = summarize(s);
          seen.add(row.id);
          if (JSON.stringify(this.sandboxes.get(row.id)) === JSON.stringify(row)) continue;
          this.sandboxes.set(row.id, row);
          this.pending.upsert.push(row);
        }
        for (const id of [...this.sandboxes.keys()]) {
          if (seen.has(id)) continue;
          this.sandboxes.delete(id);
          this.pending.remove.push(id);
        }
        this.queueFlush();
      } catch (err) {
        this.log?.warn({ err }, 'the sandbox list could not be read');
      } finally {
        this.refreshing = undefined;
        const again = this.refreshAgain;
        this.refreshAgain = false;
        this.scheduleRefresh(again ? REFRESH_AFTER_CHANGE_MS : this.refreshEveryMs);
      }
    })();
    return this.refreshing;
  }

  // Changes that arrive together (the first read of 1,000 records) go out as one message.
  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => {
      this.flushQueued = false;
      const m = this.pending;
      this.pending = { kind: 'sandboxes', upsert: [], remove: [] };
      if (m.upsert.length || m.remove.length) this.broadcast(m);
    });
  }

  private broadcast(m: ListMessage): void {
    for (const l of this.listeners) l(m);
  }

  /** Sends the current list, then every change, until the returned function is called. */
  subscribe(listener: Listener): () => void {
    listener({ kind: 'hosts', hosts: this.hosts });
    listener({ kind: 'sandboxes', upsert: [...this.sandboxes.values()], remove: [] });
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  stop(): void {
    this.stopped = true;
    this.events?.unsubscribe();
    clearTimeout(this.timer);
    clearTimeout(this.refreshTimer);
    this.listeners.clear();
  }
}

/** One viewer of one sandbox: status, then history, then live events and snapshots. */
export async function followSandbox(client: VcClient, sid: string, send: (m: SandboxMessage) => void, signal: AbortSignal): Promise<void> {
  // Subscribed first: no snapshot between the replay and the live part is lost.
  const inspection = client.nc.subscribe(subjects.inspectSandbox(sid), {
    callback: (err, m) => {
      if (!err) send({ kind: 'inspection', inspection: decodeTrusted<Bus.Inspection>(m.data) });
    },
  });
  signal.addEventListener('abort', () => inspection.unsubscribe(), { once: true });
  try {
    const reply = await client.request('SandboxStatus', { sid }, {}, { timeoutMs: 5000 });
    if (reply.ok !== false && reply.sandbox) {
      const host = reply.sandbox.host ?? '';
      const answers = await client.discover('INFO', 1000, (a) => hostOf(a) === host);
      send({ kind: 'status', exists: true, host, inspect: publishesInspection(answers.find((a) => hostOf(a) === host)) });
    } else {
      send({ kind: 'status', exists: false, message: reply.error?.message ?? 'not found' });
    }
  } catch (err) {
    send({ kind: 'status', exists: false, message: (err as Error).message });
  }
  let last = 0;
  for await (const e of client.events({ sandboxId: sid })) {
    if (signal.aborted) return;
    send({ kind: 'event', event: e.event });
    last = Math.max(last, Number(e.event.seq ?? 0));
  }
  send({ kind: 'replayed' });
  for await (const e of client.events({ sandboxId: sid, since: last + 1, follow: true, signal })) {
    send({ kind: 'event', event: e.event });
  }
}
