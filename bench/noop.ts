// Noop-agent figures: bus round trips against raw NATS request/reply on the same server,
// full lifecycles per second, CPU time per command of each process, and heap per idle
// sandbox. The runtime host runs in a process of its own (as `npm start` runs it) and
// the raw baseline answers from a process of its own, so that a round trip crosses the
// same hops in both, and CPU time is read per process from /proc.
import type { VcClient } from '../bus/client.js';
import { encode } from '../bus/codec.js';
import type { RuntimeHost } from '../runtime/host.js';
import { cpuMicros, startEchoProcess, startHostProcess } from './processes.js';
import { Replies } from '../bus/replies.js';
import { gcHeap, interleaved, measure, round, throughput, type Latency } from './stats.js';

export interface NoopFigures {
  rawRequestReply: Latency;
  /** The same echo, its replies received as the typed client receives them (bus/replies.ts). */
  rawOneSubscription: Latency & { ratioToRaw: number };
  sandboxStatus: Latency & { ratioToRaw: number; ratioToOneSubscription: number };
  sandboxCreate: Latency & { ratioToRaw: number };
  sandboxStart: Latency & { ratioToRaw: number };
  lifecycles: { inFlight: number; total: number; seconds: number; perSecond: number };
  /** CPU time per command during the lifecycles, µs, per process. */
  cpuPerCommandMicros: { runtime: number; natsServer: number; client: number };
}

export interface NoopOptions {
  samples: number;
  lifecycles: number;
  servers: string;
  natsServerPid: number;
  stateDir: string;
  /** Extra node flags for the runtime host process (--cpu-prof to profile it). */
  hostNodeArgs?: string[];
}

const HOST = 'bench-noop';

export async function benchNoop(client: VcClient, o: NoopOptions): Promise<NoopFigures> {
  const echo = await startEchoProcess(o.servers);
  const host = await startHostProcess(client, { servers: o.servers, host: HOST, stateDir: o.stateDir, nodeArgs: o.hostNodeArgs });
  try {
    const nc = client.nc;
    const create = (id: string) => client.call('HostSandboxCreate', { host: HOST }, { sandbox: { id } });
    await client.call('HostSandboxCreate', { host: HOST }, { sandbox: { id: 'bench-status' }, start: true });
    const empty = encode({});
    const replies = Replies.for(nc);
    const { raw: rawRequestReply, oneSubscription, status } = await interleaved(o.samples, 10, {
      raw: () => nc.request('bench.echo', empty, { timeout: 5000 }),
      oneSubscription: () => replies.request('bench.echo', empty, 5000),
      status: () => client.call('SandboxStatus', { sid: 'bench-status' }),
    });
    const id = (i: number) => `bc-${i < 0 ? `w${-i}` : i}`;
    const created = await measure(o.samples, (i) => create(id(i)));
    const started = await measure(o.samples, (i) => client.call('SandboxStart', { sid: id(i) }));
    // Clean up what the latency runs created, in parallel.
    const ids = ['bench-status', ...Array.from({ length: Math.min(50, o.samples) }, (_, i) => `bc-w${i + 1}`), ...Array.from({ length: o.samples }, (_, i) => `bc-${i}`)];
    await throughput(ids.length, 64, (i) => client.call('SandboxDelete', { sid: ids[i]! }, { force: true }));

    const lifecycle = (tag: string) => async (i: number) => {
      const sid = `${tag}-${i}`;
      await create(sid);
      await client.call('SandboxStart', { sid });
      await client.call('SandboxStop', { sid });
      await client.call('SandboxDelete', { sid });
    };
    await throughput(Math.min(500, o.lifecycles), 64, lifecycle('lw'));
    const before = { runtime: cpuMicros(host.pid), natsServer: cpuMicros(o.natsServerPid), client: process.cpuUsage() };
    const lifecycles = await throughput(o.lifecycles, 64, lifecycle('lc'));
    const commands = o.lifecycles * 4;
    const clientCpu = process.cpuUsage(before.client);
    const per = (micros: number) => round(micros / commands, 1);

    const ratio = (l: Latency) => ({ ...l, ratioToRaw: round(l.p50 / rawRequestReply.p50, 2) });
    return {
      rawRequestReply,
      rawOneSubscription: ratio(oneSubscription),
      sandboxStatus: { ...ratio(status), ratioToOneSubscription: round(status.p50 / oneSubscription.p50, 2) },
      sandboxCreate: ratio(created),
      sandboxStart: ratio(started),
      lifecycles: { inFlight: 64, ...lifecycles },
      cpuPerCommandMicros: {
        runtime: per(cpuMicros(host.pid) - before.runtime),
        natsServer: per(cpuMicros(o.natsServerPid) - before.natsServer),
        client: per(clientCpu.user + clientCpu.system),
      },
    };
  } finally {
    await host.stop();
    await echo.stop();
  }
}

/** Heap each idle noop sandbox costs a host (measured in this process, with its own host). */
export async function benchIdleHeap(client: VcClient, host: RuntimeHost, idle: number): Promise<{ sandboxes: number; bytes: number; kib: number }> {
  const create = (i: number) => client.call('HostSandboxCreate', { host: host.host }, { sandbox: { id: `idle-${i}` } });
  const before = await gcHeap();
  await throughput(idle, 64, create);
  const after = await gcHeap();
  const bytes = (after - before) / idle;
  const ids = [...host.registry.values()].map((s) => s.id);
  await throughput(ids.length, 64, (i) => client.call('SandboxDelete', { sid: ids[i]! }));
  return { sandboxes: idle, bytes: Math.round(bytes), kib: round(bytes / 1024, 2) };
}
