// The bus side of the page: the sandbox list (followed in the vc_sandboxes KV bucket),
// the hosts (asked through service discovery every few seconds) and, per viewed
// sandbox, its events (replayed from VC_EVENTS, then followed) and actor snapshots.
import type { Logger } from 'pino';
import type { VcClient } from '../bus/client.js';
import { decodeTrusted } from '../bus/codec.js';
import { hostOf, publishesInspection } from '../bus/service-discovery.js';
import { watchSandboxRecords, type SandboxRecord } from '../bus/store.js';
import { subjects } from '../bus/subjects.js';
import type * as Bus from '../bus/messages.gen.js';
import type { HostSummary, ListMessage, SandboxMessage, SandboxSummary } from './protocol.js';

export function summarize(r: SandboxRecord): SandboxSummary {
  const s = r.status;
  const out: SandboxSummary = {
    id: r.id,
    host: r.host,
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

/** The list every page shares: one KV watch and one host poll per `ui` process. */
export class LiveList {
  private readonly sandboxes = new Map<string, SandboxSummary>();
  private hosts: HostSummary[] = [];
  private readonly listeners = new Set<Listener>();
  private pending: ListMessage & { kind: 'sandboxes' } = { kind: 'sandboxes', upsert: [], remove: [] };
  private flushQueued = false;
  private stopWatch?: () => void;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly client: VcClient,
    private readonly hostPollMs = 2000,
    private readonly log?: Logger,
  ) {}

  async start(): Promise<void> {
    this.stopWatch = await watchSandboxRecords(this.client.nc, (c) => {
      if (c.record) {
        const row = summarize(c.record);
        this.sandboxes.set(c.id, row);
        this.pending.upsert.push(row);
      } else if (this.sandboxes.delete(c.id)) {
        this.pending.remove.push(c.id);
      }
      this.queueFlush();
    }, (err) => this.log?.error({ err }, 'the sandbox list is no longer followed'));
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
      this.timer = setTimeout(() => void poll(), this.hostPollMs);
    };
    await poll();
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
    this.stopWatch?.();
    clearTimeout(this.timer);
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
