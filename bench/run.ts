// `npm run bench`: measures the runtime beside raw NATS on one private nats-server,
// in one run, and writes bench/results/latest.json and bench/results/latest.md.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startNatsServer } from '../runtime/nats-server.js';
import { RuntimeHost } from '../runtime/host.js';
import { connectBus } from '../bus/connection.js';
import '../actors/install-drivers.js';
import { benchNoop } from './noop.js';
import type { Latency } from './stats.js';

const quick = process.argv.includes('--quick');

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vc-bench-'));
  const server = await startNatsServer({ storeDir: join(dir, 'nats') });
  const host = await RuntimeHost.start({ servers: server.url, host: 'bench', runRoot: join(dir, 'run'), log: pino({ level: 'silent' }) });
  const nc = await connectBus({ servers: server.url, name: 'bench-client' });
  const results: Record<string, unknown> = {
    date: new Date().toISOString(),
    node: process.version,
    natsServer: 'nats-server (JetStream, file storage) on loopback',
    machine: { cpus: (await import('node:os')).cpus().length },
  };
  try {
    results.noop = await benchNoop(nc, host, quick ? { samples: 200, lifecycles: 500, idle: 1000 } : { samples: 2000, lifecycles: 5000, idle: 10_000 });
  } finally {
    await nc.close();
    await host.stop();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/latest.json', `${JSON.stringify(results, null, 2)}\n`);
  const md = markdown(results);
  writeFileSync('bench/results/latest.md', md);
  process.stdout.write(md);
}

function markdown(r: Record<string, unknown>): string {
  const n = r.noop as Awaited<ReturnType<typeof benchNoop>>;
  const lat = (name: string, l: Latency & { ratioToRaw?: number }, target = '') =>
    `| ${name} | ${l.p50} | ${l.p99} | ${l.ratioToRaw ?? '1'} | ${target} |`;
  return [
    `# virtactors benchmarks`,
    '',
    `${r.date}, Node ${r.node}, ${(r.machine as { cpus: number }).cpus} cores, ${r.natsServer}.`,
    '',
    '## Noop agent',
    '',
    '| round trip | p50 ms | p99 ms | p50 / raw | target |',
    '|---|---|---|---|---|',
    lat('raw NATS request/reply', n.rawRequestReply),
    lat('sandbox status', n.sandboxStatus, 'p50 within 2x raw'),
    lat('sandbox create', n.sandboxCreate),
    lat('sandbox start', n.sandboxStart),
    '',
    '| throughput and memory | value | target |',
    '|---|---|---|',
    `| full noop lifecycles (create, start, stop, delete), ${n.lifecycles.inFlight} in flight | ${n.lifecycles.perSecond} /s (${n.lifecycles.total} in ${n.lifecycles.seconds} s) | at least 1,000 /s |`,
    `| heap per idle noop sandbox (${n.heapPerIdleSandbox.sandboxes} sandboxes) | ${n.heapPerIdleSandbox.kib} KiB | under 16 KiB |`,
    '',
  ].join('\n');
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
