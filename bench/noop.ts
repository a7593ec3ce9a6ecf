// Noop-agent figures: bus round trips against raw NATS request/reply on the same
// server, full lifecycles per second, heap per idle sandbox.
import type { VcClient } from '../bus/client.js';
import { encode } from '../bus/codec.js';
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

export async function benchNoop(client: VcClient, host: RuntimeHost, opts: { samples: number; lifecycles: number; idle: number }): Promise<NoopFigures> {
  const nc = client.nc;
  // Raw NATS: a responder in the same process that answers with a small JSON reply,
  // on a subject outside the runtime's namespace.
  const echo = nc.subscribe('bench.echo', { callback: (_e, m) => {
      m.respond(encode({ ok: true }));
    },
  });
  const rawRequestReply = await measure(opts.samples, () => nc.request('bench.echo', encode({}), { timeout: 5000 }));
  echo.unsubscribe();

  await client.call('SandboxCreate', {}, { sandbox: { id: 'bench-status' }, start: true });
  const status = await measure(opts.samples, () => client.call('SandboxStatus', { sid: 'bench-status' }));
  const create = await measure(opts.samples, (i) => client.call('SandboxCreate', {}, { sandbox: { id: `bc-${i < 0 ? `w${-i}` : i}` } }));
  const start = await measure(opts.samples, (i) => client.call('SandboxStart', { sid: `bc-${i < 0 ? `w${-i}` : i}` }));
  // Clean up what the latency runs created, in parallel.
  const ids = [...host.registry.values()].map((s) => s.id);
  await throughput(ids.length, 64, (i) => client.call('SandboxDelete', { sid: ids[i]! }, { force: true }));

  const lifecycles = await throughput(opts.lifecycles, 64, async (i) => {
    const id = `lc-${i}`;
    await client.call('SandboxCreate', {}, { sandbox: { id } });
    await client.call('SandboxStart', { sid: id });
    await client.call('SandboxStop', { sid: id });
    await client.call('SandboxDelete', { sid: id });
  });

  const before = await gcHeap();
  await throughput(opts.idle, 64, (i) => client.call('SandboxCreate', {}, { sandbox: { id: `idle-${i}` } }));
  const after = await gcHeap();
  const bytes = (after - before) / opts.idle;
  const idleIds = [...host.registry.values()].map((s) => s.id);
  await throughput(idleIds.length, 64, (i) => client.call('SandboxDelete', { sid: idleIds[i]! }));

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
