// Commands during the loss of one server of a 3-node cluster: two runtime hosts and a
// client list every server; the stream and buckets have 3 replicas. The same command
// loop (create and start a noop sandbox, its status, delete it) runs for a while with
// all three servers, then the server leading the events stream is killed (SIGKILL)
// and the loop runs on: the fraction of commands answered ok and their latencies, in
// each phase, beside raw NATS request/reply on the same cluster.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { jetstreamManager } from '@nats-io/jetstream';
import { RuntimeHost } from '../runtime/host.js';
import { CommandError, VcClient } from '../bus/client.js';
import { connectBus } from '../bus/connection.js';
import { streams } from '../bus/subjects.js';
import { killServer, startTestCluster } from '../test/helpers/nats.js';
import { round, summarize, type Latency } from './stats.js';

/** How long the client waits after a failed command before the next one. */
const RETRY_PAUSE_MS = 100;

export interface PhaseFigures {
  seconds: number;
  commands: number;
  ok: number;
  okFraction: number;
  /** Latency of the commands answered ok. */
  okLatency: Latency;
  /** Failures by code (Unavailable, DeadlineExceeded, ...). */
  failures: Record<string, number>;
  /** The longest stretch without an ok answer, in ms. */
  longestGapMs: number;
}

export interface ClusterLossFigures {
  servers: number;
  replicas: number;
  commandTimeoutMs: number;
  rawNatsBefore: Latency;
  before: PhaseFigures;
  /** From the kill on. */
  during: PhaseFigures;
}

async function phase(client: VcClient, seconds: number, timeoutMs: number, tag: string): Promise<PhaseFigures> {
  const oks: number[] = [];
  const failures: Record<string, number> = {};
  let commands = 0;
  let lastOk = performance.now();
  let longestGap = 0;
  const end = performance.now() + seconds * 1000;
  const run = async (fn: () => Promise<unknown>): Promise<boolean> => {
    const t = performance.now();
    commands++;
    try {
      await fn();
      const now = performance.now();
      oks.push(now - t);
      longestGap = Math.max(longestGap, now - lastOk);
      lastOk = now;
      return true;
    } catch (err) {
      const code = err instanceof CommandError ? err.code : 'other';
      failures[code] = (failures[code] ?? 0) + 1;
      // A client that is told Unavailable tries again a little later, as the code asks.
      await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
      return false;
    }
  };
  for (let i = 0; performance.now() < end; i++) {
    const sid = `${tag}-${i}`;
    // A sandbox that was not created has nothing to ask about or delete.
    if (!(await run(() => client.call('SandboxCreate', {}, { sandbox: { id: sid }, start: true }, { timeoutMs })))) continue;
    await run(() => client.call('SandboxStatus', { sid }, undefined, { timeoutMs }));
    while (!(await run(() => client.call('SandboxDelete', { sid }, { force: true }, { timeoutMs }))) && performance.now() < end);
  }
  longestGap = Math.max(longestGap, performance.now() - lastOk);
  return { seconds, commands, ok: oks.length, okFraction: round(oks.length / Math.max(1, commands), 4), okLatency: summarize(oks), failures, longestGapMs: round(longestGap, 0) };
}

export async function benchClusterLoss(opts: { beforeSeconds: number; duringSeconds: number; timeoutMs: number }): Promise<ClusterLossFigures> {
  const cluster = await startTestCluster(3);
  const dir = mkdtempSync(join(tmpdir(), 'vc-bench-cluster-'));
  const hosts: RuntimeHost[] = [];
  let client: VcClient | undefined;
  try {
    for (const [i, name] of ['bench-a', 'bench-b'].entries()) {
      const urls = [...cluster.urls.slice(i), ...cluster.urls.slice(0, i)];
      hosts.push(await RuntimeHost.start({ servers: urls, host: name, creds: cluster.auth.host, runRoot: join(dir, name), log: pino({ level: 'silent' }) }));
    }
    client = await VcClient.connect({ servers: cluster.urls, creds: cluster.auth.operator, persistent: true, timeoutMs: opts.timeoutMs });
    const jsm = await jetstreamManager(hosts[0]!.nc);
    const info = await jsm.streams.info(streams.events);

    // Raw NATS request/reply on the same cluster: an echo on a host connection, asked by another.
    const echoConn = await connectBus({ servers: cluster.urls, creds: cluster.auth.host });
    const askConn = await connectBus({ servers: [...cluster.urls].reverse(), creds: cluster.auth.host });
    const sub = echoConn.subscribe('_INBOX.bench-echo', { callback: (_e, m) => { m.respond(m.data); } });
    await echoConn.flush();
    const raw: number[] = [];
    for (let i = 0; i < 500; i++) {
      const t = performance.now();
      await askConn.request('_INBOX.bench-echo', new Uint8Array(8), { timeout: 2000 });
      raw.push(performance.now() - t);
    }
    sub.unsubscribe();
    await echoConn.close();
    await askConn.close();

    const before = await phase(client, opts.beforeSeconds, opts.timeoutMs, 'pre');
    const leader = (await jsm.streams.info(streams.events)).cluster!.leader!;
    await killServer(cluster.nodes[Number(leader.replace(/^n/, ''))]!);
    const during = await phase(client, opts.duringSeconds, opts.timeoutMs, 'post');
    return { servers: 3, replicas: info.config.num_replicas, commandTimeoutMs: opts.timeoutMs, rawNatsBefore: summarize(raw), before, during };
  } finally {
    await client?.close();
    for (const h of hosts) await h.stop().catch(() => {});
    await cluster.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function clusterLossTable(c: ClusterLossFigures): string[] {
  const row = (name: string, p: PhaseFigures) =>
    `| ${name} | ${p.commands} | ${(p.okFraction * 100).toFixed(2)} % | ${p.okLatency.p50} | ${p.okLatency.p99} | ${p.longestGapMs} | ${Object.entries(p.failures).map(([k, v]) => `${k} ${v}`).join(', ') || '-'} |`;
  return [
    `## Losing one server of a 3-node cluster`,
    '',
    `Two hosts and a client listing every server; the stream and buckets with ${c.replicas} replicas. One client runs create + status + delete of noop sandboxes in a loop (command timeout ${c.commandTimeoutMs} ms; after a failure it waits ${RETRY_PAUSE_MS} ms, skips status and delete of a sandbox not created, and retries a delete), ${c.before.seconds} s with three servers, then ${c.during.seconds} s from the SIGKILL of the server leading the events stream. Raw NATS request/reply on the same cluster before the kill: p50 ${c.rawNatsBefore.p50} ms, p99 ${c.rawNatsBefore.p99} ms.`,
    '',
    '| phase | commands | answered ok | ok p50 (ms) | ok p99 (ms) | longest gap without ok (ms) | failures |',
    '|---|---|---|---|---|---|---|',
    row('three servers', c.before),
    row('from the kill on', c.during),
    '',
  ];
}
