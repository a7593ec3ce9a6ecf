// Noop-agent figures: bus round trips against raw NATS request/reply on the same
// server, full lifecycles per second, heap per idle sandbox.
import type { NatsConnection } from '@nats-io/transport-node';
import { decodeTrusted, encode } from '../bus/codec.js';
import { subjects } from '../bus/subjects.js';
import type { RuntimeHost } from '../runtime/host.js';
import { gcHeap, measure, round, throughput, type Latency } from './stats.js';

export interface NoopFigures {
  rawRequestReply: Latency;
  sandboxStatus: Latency & { ratioToRaw: number };
  sandboxCreate: Latency & { ratioToRaw: number };
  sandboxStart: Latency & { ratioToRaw: number };
  lifecycles: { inFlight: number; total: number; seconds: number; perSecond: number };
  heapPerIdleSandbox: { sandboxes: number; bytes: number; kib: number };
}

async function call(nc: NatsConnection, subject: string, body: object = {}): Promise<Record<string, unknown>> {
  const msg = await nc.request(subject, encode(body), { timeout: 30_000 });
  const reply = decodeTrusted<{ ok: boolean; error?: { message: string } }>(msg.data);
  if (!reply.ok) throw new Error(`${subject}: ${reply.error?.message}`);
  return reply;
}

export async function benchNoop(nc: NatsConnection, host: RuntimeHost, opts: { samples: number; lifecycles: number; idle: number }): Promise<NoopFigures> {
  // Raw NATS: a responder in the same process that answers with a small JSON reply,
  // on a subject outside the runtime's namespace.
  const echo = nc.subscribe('bench.echo', { callback: (_e, m) => {
      m.respond(encode({ ok: true }));
    },
  });
  const rawRequestReply = await measure(opts.samples, () => nc.request('bench.echo', encode({}), { timeout: 5000 }));
  echo.unsubscribe();

  await call(nc, subjects.sandboxCreate(), { sandbox: { id: 'bench-status' }, start: true });
  const status = await measure(opts.samples, () => call(nc, subjects.sandboxOp('bench-status', 'status')));
  const create = await measure(opts.samples, (i) => call(nc, subjects.sandboxCreate(), { sandbox: { id: `bc-${i < 0 ? `w${-i}` : i}` } }));
  const start = await measure(opts.samples, (i) => call(nc, subjects.sandboxOp(`bc-${i < 0 ? `w${-i}` : i}`, 'start')));
  // Clean up what the latency runs created, in parallel.
  const ids = [...host.registry.values()].map((s) => s.id);
  await throughput(ids.length, 64, (i) => call(nc, subjects.sandboxOp(ids[i]!, 'delete'), { force: true }));

  const lifecycles = await throughput(opts.lifecycles, 64, async (i) => {
    const id = `lc-${i}`;
    await call(nc, subjects.sandboxCreate(), { sandbox: { id } });
    await call(nc, subjects.sandboxOp(id, 'start'));
    await call(nc, subjects.sandboxOp(id, 'stop'));
    await call(nc, subjects.sandboxOp(id, 'delete'));
  });

  const before = await gcHeap();
  await throughput(opts.idle, 64, (i) => call(nc, subjects.sandboxCreate(), { sandbox: { id: `idle-${i}` } }));
  const after = await gcHeap();
  const bytes = (after - before) / opts.idle;
  const idleIds = [...host.registry.values()].map((s) => s.id);
  await throughput(idleIds.length, 64, (i) => call(nc, subjects.sandboxOp(idleIds[i]!, 'delete')));

  const ratio = (l: Latency) => ({ ...l, ratioToRaw: round(l.p50 / rawRequestReply.p50, 2) });
  return {
    rawRequestReply,
    sandboxStatus: ratio(status),
    sandboxCreate: ratio(create),
    sandboxStart: ratio(start),
    lifecycles: { inFlight: 64, ...lifecycles },
    heapPerIdleSandbox: { sandboxes: opts.idle, bytes: Math.round(bytes), kib: round(bytes / 1024, 2) },
  };
}
