// Prometheus metrics of one runtime host (prom-client), served as text on
// VC_METRICS_ADDR (default 127.0.0.1:9464; "off" turns it off). Each host has a
// registry of its own, so several hosts in one process (the tests) never share counts.
// Every name starts with virtactors_; the README lists them.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Event } from '../bus/messages.gen.js';
import type { SandboxActor } from '../actors/sandbox-actor.js';
import { containerRefs } from '../machines/sandbox.js';

export const DEFAULT_METRICS_ADDR = '127.0.0.1:9464';

export class HostMetrics {
  readonly registry = new Registry();
  private readonly commands: Counter<'command' | 'code'>;
  private readonly latency: Histogram<'command'>;
  private readonly monitorFailures: Counter<'reason'>;
  private readonly eventsPublished: Counter<'type'>;
  private pending = 0;

  constructor(host: string, sandboxes: { values(): Iterable<SandboxActor> }) {
    this.registry.setDefaultLabels({ host });
    const registers = [this.registry];
    this.commands = new Counter({
      name: 'virtactors_commands_total',
      help: 'Commands served, by command and outcome (OK or the error code)',
      labelNames: ['command', 'code'],
      registers,
    });
    this.latency = new Histogram({
      name: 'virtactors_command_duration_seconds',
      help: 'Time from a command arriving to its reply, by command',
      labelNames: ['command'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.monitorFailures = new Counter({
      name: 'virtactors_monitor_failures_total',
      help: 'Sandboxes failed by the monitor, by reason (guest-exited, agent-unreachable, check-timeout)',
      labelNames: ['reason'],
      registers,
    });
    this.eventsPublished = new Counter({
      name: 'virtactors_events_published_total',
      help: 'Lifecycle events stored in the event stream, by type',
      labelNames: ['type'],
      registers,
    });
    const self = this;
    new Gauge({
      name: 'virtactors_events_pending',
      help: 'Lifecycle events waiting to be stored in the event stream',
      registers,
      collect() {
        this.set(self.pending);
      },
    });
    new Gauge({
      name: 'virtactors_sandboxes',
      help: 'Sandboxes held by this host, by state',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        for (const s of sandboxes.values()) this.inc({ state: s.state });
      },
    });
    new Gauge({
      name: 'virtactors_containers',
      help: "Containers of this host's sandboxes, by state",
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        for (const s of sandboxes.values()) {
          for (const c of containerRefs(s.snapshot())) {
            const snap = c.getSnapshot();
            this.inc({ state: snap.status === 'done' ? 'deleted' : String(snap.value) });
          }
        }
      },
    });
    new Gauge({
      name: 'virtactors_guest_memory_bytes',
      help: "Memory a sandbox's guest uses, by what its backend can measure: cgroup (namespace: the sandbox cgroup's usage), process-tree-rss (process: the guest's processes' resident sets), qemu-rss (vm: the qemu process's resident set)",
      labelNames: ['sandbox', 'backend', 'measure'],
      registers,
      collect() {
        this.reset();
        for (const s of sandboxes.values()) {
          const memory = s.backend.guestMemory?.();
          if (memory) this.set({ sandbox: s.id, backend: s.backend.type, measure: memory.measure }, memory.bytes);
        }
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'virtactors_' });
  }

  /** One command served (not a forwarded one: its owner counts it). */
  command(name: string, code: string, seconds: number): void {
    this.commands.inc({ command: name, code });
    this.latency.observe({ command: name }, seconds);
  }

  /** Wraps the event publisher: counts what waits, what was stored, and monitor failures. */
  publishing<R>(publish: (event: Event, dedupId: string) => Promise<R>): (event: Event, dedupId: string) => Promise<R> {
    return async (event, dedupId) => {
      if (event.type === 'fail' && !event.containerId && event.reason) this.monitorFailures.inc({ reason: event.reason });
      this.pending++;
      try {
        const outcome = await publish(event, dedupId);
        this.eventsPublished.inc({ type: event.type ?? 'unknown' });
        return outcome;
      } finally {
        this.pending--;
      }
    };
  }
}

/** Parses VC_METRICS_ADDR: HOST:PORT, or off. */
export function parseMetricsAddr(value: string | undefined): { host: string; port: number } | undefined {
  const v = value ?? DEFAULT_METRICS_ADDR;
  if (v === 'off') return undefined;
  const m = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) > 65535) throw new Error(`VC_METRICS_ADDR must be HOST:PORT (e.g. ${DEFAULT_METRICS_ADDR}) or off, not ${JSON.stringify(v)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/** Serves GET /metrics; resolves once listening (port 0: any free one). */
export async function serveMetrics(metrics: HostMetrics, addr: { host: string; port: number }): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && req.url !== '/')) {
      res.writeHead(404).end('see /metrics\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (err: Error) => res.writeHead(500).end(`${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(addr.port, addr.host, () => resolve());
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}/metrics`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
