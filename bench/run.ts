// `npm run bench`: measures the runtime beside raw NATS on one private nats-server,
// in one run, and writes bench/results/latest.json and bench/results/latest.md.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startNatsServer } from '../runtime/nats-server.js';
import { RuntimeHost } from '../runtime/host.js';
import { VcClient } from '../bus/client.js';
import '../actors/install-drivers.js';
import { benchIdleHeap, benchNoop } from './noop.js';
import { benchAuth, type AuthFigures } from './auth.js';
import { benchGuests, type GuestFigures } from './guests.js';
import { backendTable, benchBackends, type BackendFigures } from './namespace-backend.js';
import { benchHyperstart, type HyperstartFigures } from './hyperstart.js';
import { benchKataGuest, type KataGuestFigures } from './kata-guest.js';
import { hasAgent } from '../actors/agents/index.js';
import { existsSync } from 'node:fs';
import { benchUi, uiTable, type UiFigures } from './ui.js';
import { CHROMIUM } from '../test/helpers/browser.js';
import { benchVm, vmTable, type VmFigures } from './vm.js';
import type { Latency } from './stats.js';
import { benchReattach, reattachTable, type ReattachFigures } from './reattach.js';
import { benchClusterLoss, clusterLossTable, type ClusterLossFigures } from './cluster-loss.js';
import { benchHostLoss, hostLossTable, type HostLossFigures } from './host-loss.js';

const quick = process.argv.includes('--quick');
/** `--only auth,noop`: run these sections, keep the others from the last results. */
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length).split(',');
const runs = (section: string) => !only || only.includes(section);
/** `--profile=DIR`: the noop section's runtime host writes a V8 CPU profile there (node --cpu-prof). */
const profileDir = process.argv.find((a) => a.startsWith('--profile='))?.slice('--profile='.length);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vc-bench-'));
  // Searchable as a runtime's state directory is, so that guests run in a user namespace
  // as they do by default (a 0700 parent would keep their mapped root out).
  chmodSync(dir, 0o711);
  const server = await startNatsServer({ storeDir: join(dir, 'nats') });
  const client = await VcClient.connect({ servers: server.url, name: 'bench-client' });
  let host: RuntimeHost | undefined;
  const previous: Record<string, unknown> = only ? JSON.parse(readFileSync('bench/results/latest.json', 'utf8')) : {};
  const now = new Date().toISOString();
  const startHost = () => RuntimeHost.start({ servers: server.url, host: 'bench', runRoot: join(dir, 'run'), log: pino({ level: 'silent' }) });
  const results: Record<string, unknown> = {
    ...previous,
    date: only ? previous.date : now,
    node: process.version,
    natsServer: 'nats-server (JetStream, file storage) on loopback',
    machine: { cpus: (await import('node:os')).cpus().length },
    // When each section was last measured, for sections re-run since the full run.
    ...(only ? { sectionDates: { ...(previous.sectionDates as Record<string, string> | undefined), ...Object.fromEntries(only.map((s) => [s, now])) } } : {}),
  };
  delete results.partialRun;
  try {
    if (runs('noop')) {
      // First, with a runtime host process of their own and no other host on the server.
      const noop = await benchNoop(client, {
        ...(quick ? { samples: 200, lifecycles: 500 } : { samples: 2000, lifecycles: 5000 }),
        servers: server.url,
        natsServerPid: server.process.pid!,
        stateDir: join(dir, 'noop-host'),
        ...(profileDir ? { hostNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] } : {}),
      });
      host = await startHost();
      results.noop = { ...noop, heapPerIdleSandbox: await benchIdleHeap(client, host, quick ? 1000 : 10_000) };
    }
    if (runs('auth')) {
      process.stderr.write('bench: authentication...\n');
      results.auth = await benchAuth(quick ? { rounds: 4, samples: 100 } : { rounds: 10, samples: 300 });
    }
    if (runs('guests')) {
      host ??= await startHost();
      const guests: GuestFigures[] = [];
      for (const agent of ['kata', 'hyperstart'] as const) {
        if (!hasAgent(agent)) continue;
        process.stderr.write(`bench: ${agent} guests...\n`);
        guests.push(
          await benchGuests(client, host, agent, quick
            ? { sandboxes: 5, containers: 10, faults: 3, monitored: agent === 'kata' ? 10 : 0, monitorSeconds: 3 }
            : { sandboxes: 30, containers: 100, faults: 20, monitored: agent === 'kata' ? 100 : 0, monitorSeconds: 10 }),
        );
      }
      results.guests = guests;
    }
    if (runs('kata')) {
      process.stderr.write('bench: kata protocol...\n');
      results.kataProtocol = await benchKataGuest(quick ? { boots: 5, samples: 50 } : { boots: 20, samples: 300 });
    }
    if (runs('hyperstart')) {
      process.stderr.write('bench: hyperstart protocol...\n');
      results.hyperstartProtocol = await benchHyperstart(quick ? { samples: 50, boots: 5, outputMiB: 16 } : { samples: 400, boots: 20, outputMiB: 128 });
    }
    if (runs('backends')) {
      process.stderr.write('bench: backends...\n');
      results.backends = await benchBackends(quick ? 5 : 20);
    }
    if (runs('ui')) {
      if (existsSync(CHROMIUM)) {
        host ??= await startHost();
        process.stderr.write('bench: live page in Chromium...\n');
        results.ui = await benchUi(client, host, quick ? { samples: 40, listed: 1000, loads: 3 } : { samples: 200, listed: 1000, loads: 10 });
      } else {
        process.stderr.write(`bench: no ${CHROMIUM}: the live page is not measured (npm run setup installs chromium)\n`);
      }
    }
    if (runs('reattach')) {
      process.stderr.write('bench: restart after kill -9...\n');
      results.reattach = await benchReattach(server.url, client, join(dir, 'reattach-host'), quick ? { noop: 200, kata: 5, cycles: 3, exitsPerCycle: 2 } : { noop: 1000, kata: 20, cycles: 20, exitsPerCycle: 5 });
    }
    if (runs('cluster-loss')) {
      process.stderr.write('bench: losing one server of a 3-node cluster...\n');
      results.clusterLoss = await benchClusterLoss(quick ? { beforeSeconds: 5, duringSeconds: 15, timeoutMs: 5_000 } : { beforeSeconds: 15, duringSeconds: 30, timeoutMs: 5_000 });
    }
    if (runs('host-loss')) {
      process.stderr.write('bench: a runtime host stopped or killed...\n');
      results.hostLoss = await benchHostLoss(quick ? { samples: 4, healthySamples: 200 } : { samples: 10, healthySamples: 500 });
    }
    if (runs('vm') && !process.argv.includes('--no-vm')) {
      process.stderr.write('bench: vm backend (minutes under TCG)...\n');
      results.vm = await benchVm(server.url, client, dir, quick ? { cold: 2, warm: 3, pool: 2 } : { cold: 3, warm: 5, pool: 2 });
    }
  } finally {
    // A host's stop leaves guests running for the next start to reattach: a bench that
    // failed half-way deletes what it still holds first, so it leaves no guest behind.
    if (host) await Promise.all([...host.registry.values()].map((s) => client.call('SandboxDelete', { sid: s.id }, { force: true }).catch(() => {})));
    await client.close();
    await host?.stop();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/latest.json', `${JSON.stringify(results, null, 2)}\n`);
  const md = markdown(results);
  writeFileSync('bench/results/latest.md', md);
  process.stdout.write(md);
}


/** "noop, vm on DATE; guests on DATE": the sections re-run since the full run, by date. */
function sectionsByDate(dates: Record<string, string>): string {
  const byDate = new Map<string, string[]>();
  for (const [section, date] of Object.entries(dates)) byDate.set(date, [...(byDate.get(date) ?? []), section]);
  return [...byDate].sort(([a], [b]) => a.localeCompare(b)).map(([date, sections]) => `${sections.join(', ')} on ${date}`).join('; ');
}

function markdown(r: Record<string, unknown>): string {
  const n = r.noop as Awaited<ReturnType<typeof benchNoop>> & { heapPerIdleSandbox: Awaited<ReturnType<typeof benchIdleHeap>> };
  const lat = (name: string, l: Latency & { ratioToRaw?: number }, target = '') =>
    `| ${name} | ${l.p50} | ${l.p99} | ${l.ratioToRaw ?? '1'} | ${target} |`;
  return [
    `# virtactors benchmarks`,
    '',
    `${r.date}, Node ${r.node}, ${(r.machine as { cpus: number }).cpus} cores, ${r.natsServer}.`,
    ...(r.sectionDates ? [`Re-run since: ${sectionsByDate(r.sectionDates as Record<string, string>)}.`] : []),
    '',
    '## Noop agent',
    '',
    '| round trip | p50 ms | p99 ms | p50 / raw | target |',
    '|---|---|---|---|---|',
    lat('raw NATS request/reply', n.rawRequestReply),
    ...(n.rawOneSubscription ? [lat('raw NATS, replies received on one subscription as the typed client receives them', n.rawOneSubscription, 'for comparison')] : []),
    lat('sandbox status', n.sandboxStatus, `p50 within 1.1x raw${n.sandboxStatus.ratioToOneSubscription ? ` (${n.sandboxStatus.ratioToOneSubscription}x the line above)` : ''}`),
    lat('sandbox create', n.sandboxCreate, 'p50 within 2x raw'),
    lat('sandbox start', n.sandboxStart),
    '',
    '| throughput and memory | value | target |',
    '|---|---|---|',
    `| full noop lifecycles (create, start, stop, delete), ${n.lifecycles.inFlight} in flight | ${n.lifecycles.perSecond} /s (${n.lifecycles.total} in ${n.lifecycles.seconds} s) | at least 3,000 /s |`,
    ...(n.cpuPerCommandMicros ? [`| CPU time per command during the lifecycles | runtime ${n.cpuPerCommandMicros.runtime} µs, nats-server ${n.cpuPerCommandMicros.natsServer} µs, client ${n.cpuPerCommandMicros.client} µs | reported |`] : []),
    `| heap per idle noop sandbox (${n.heapPerIdleSandbox.sandboxes} sandboxes) | ${n.heapPerIdleSandbox.kib} KiB | under 16 KiB |`,
    '',
    ...authTable(r.auth as AuthFigures | undefined),
    ...guestTable((r.guests as GuestFigures[] | undefined) ?? []),
    ...kataTable(r.kataProtocol as KataGuestFigures | undefined),
    ...hyperstartTable(r.hyperstartProtocol as HyperstartFigures | undefined),
    ...backendTable((r.backends as BackendFigures[] | undefined) ?? []),
    ...uiTable(r.ui as UiFigures | undefined),
    ...vmTable(r.vm as VmFigures | undefined),
    ...reattachTable(r.reattach as ReattachFigures | undefined),
    ...(r.clusterLoss ? clusterLossTable(r.clusterLoss as ClusterLossFigures) : []),
    ...hostLossTable(r.hostLoss as HostLossFigures | undefined),
  ].join('\n');
}

function authTable(a: AuthFigures | undefined): string[] {
  if (!a) return [];
  return [
    `## Authentication (${a.rounds} alternating rounds of ${a.samplesPerRound} sandbox status round trips)`,
    '',
    '| server | p50 ms | p99 ms | p50 / without | expected |',
    '|---|---|---|---|---|',
    `| without authentication | ${a.withoutAuth.p50} | ${a.withoutAuth.p99} | 1 | |`,
    `| credentials and roles (operator in the clients' account, across the service import) | ${a.withAuth.p50} | ${a.withAuth.p99} | ${a.withAuth.ratioToWithout} | about 1.0x |`,
    '',
  ];
}

function guestTable(guests: GuestFigures[]): string[] {
  if (!guests.length) return [];
  const kata = guests.find((g) => g.agent === 'kata');
  const cell = (l: Latency) => `${l.p50} / ${l.p99}`;
  const vsKata = (g: GuestFigures, pick: (f: GuestFigures) => Latency) =>
    kata && g !== kata ? ` (${round2(pick(g).p50 / pick(kata).p50)}x kata)` : '';
  const row = (name: string, pick: (f: GuestFigures) => string, target: string) =>
    `| ${name} | ${guests.map(pick).join(' | ')} | ${target} |`;
  const hung = guests[0]!.detectGuestHung;
  return [
    '## Agents with a real guest (namespace backend)',
    '',
    `| figure (p50 / p99 ms unless said) | ${guests.map((g) => g.agent).join(' | ')} | target |`,
    `|---|${guests.map(() => '---|').join('')}---|`,
    row('sandbox create+start', (g) => cell(g.sandboxCreateStart) + vsKata(g, (f) => f.sandboxCreateStart) + (g.userNamespace === undefined ? '' : g.userNamespace ? ', user namespace on' : ', no user namespace'), 'p50 under 500 ms; hyperstart within 1.5x kata; within 1.2x of before crun (103.8 kata, 63.5 hyperstart)'),
    row(
      'container start to exit event (`true`), through crun',
      (g) => cell(g.containerStartToExitEvent) + vsKata(g, (f) => f.containerStartToExitEvent) + (g.containerStartToExitEventWithoutOci ? `, ${round2(g.containerStartToExitEvent.p50 / g.containerStartToExitEventWithoutOci.p50)}x without` : ''),
      'p50 under 20 ms; within 1.5x of without crun; hyperstart within 1.5x kata',
    ),
    row('container start to exit event (`true`), same run, guest without an OCI runtime', (g) => (g.containerStartToExitEventWithoutOci ? cell(g.containerStartToExitEventWithoutOci) : '–'), 'for comparison'),
    row(
      'container start to exit event (`true`), same run, through runc (`VC_OCI_RUNTIME=runc`)',
      (g) => (g.containerStartToExitEventRunc ? cell(g.containerStartToExitEventRunc) + `, ${round2(g.containerStartToExitEventRunc.p50 / g.containerStartToExitEvent.p50)}x crun` : '–'),
      'for comparison',
    ),
    row('idle guest agent resident memory', (g) => `${g.idleGuestRssMiB} MiB`, 'under 64 MiB'),
    row('detection: guest killed → fail event', (g) => cell(g.detectGuestKilled), 'p99 under 100 ms'),
    row(`detection: guest hung → fail event (interval ${hung.intervalMs} ms, deadline ${hung.deadlineMs} ms)`, (g) => cell(g.detectGuestHung), `p99 under ${hung.intervalMs + hung.deadlineMs + 100} ms`),
    row(
      'CPU of monitoring healthy sandboxes (runtime + guests, running minus paused)',
      (g) => (g.monitoringCpu ? `${g.monitoringCpu.percentOfOneCore}% of one core for ${g.monitoringCpu.sandboxes} (runtime ${g.monitoringCpu.runtimePercent}%, guests ${g.monitoringCpu.guestsPercent}%; idle guests alone ${g.monitoringCpu.withGuestsIdlePercent}%)` : '–'),
      'measured',
    ),
    '',
  ];
}

const round2 = (x: number) => Math.round(x * 100) / 100;

function kataTable(k: KataGuestFigures | undefined): string[] {
  if (!k) return [];
  const cell = (l: Latency) => `${l.p50} / ${l.p99}`;
  return [
    '## kata protocol, driver against a plain-process guest (p50 / p99 ms)',
    '',
    '| guest start → listening | guest start → sandbox created | idle guest RSS | Health.Check | container `true` run → exit → remove | exec `true` → exit |',
    '|---|---|---|---|---|---|',
    `| ${cell(k.guestStartToListening)} | ${cell(k.guestStartToSandbox)} | ${k.idleGuestRssMiB} MiB | ${cell(k.check)} | ${cell(k.containerRunTrue)} | ${cell(k.execTrue)} |`,
    '',
  ];
}

function hyperstartTable(h: HyperstartFigures | undefined): string[] {
  if (!h) return [];
  const cell = (l: Latency) => `${l.p50} / ${l.p99}`;
  return [
    '## hyperstart protocol, driver against a plain-process guest (p50 / p99 ms)',
    '',
    '| guest boot → STARTPOD answered | PING | exec `true` → exit | container `true` start → exit → remove | output |',
    '|---|---|---|---|---|',
    `| ${cell(h.guestBootToStartPod)} | ${cell(h.ping)} | ${cell(h.execTrue)} | ${cell(h.containerRunTrue)} | ${h.outputMiBPerSecond} MiB/s |`,
    '',
  ];
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
