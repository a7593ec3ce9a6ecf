// Figures of the vm backend (kata agent), beside the namespace backend in the same run:
// cold create+start (a VM booted for the sandbox; TCG here), create+start from the warm
// pool (kata, and hyperstart beside it), host memory and CPU per idle VM (qemu's RSS and
// PSS), and how many VMs the pool boots per minute when it refills. One runtime host per
// case on the bench's nats-server.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import type { VcClient } from '../bus/client.js';
import { RuntimeHost } from '../runtime/host.js';
import { findProgram } from '../actors/backends/vm/tools.js';
import { summarize, type Latency } from './stats.js';

export interface VmFigures {
  accel: string;
  machine: string;
  namespaceCreateStart: Latency;
  coldCreateStart: Latency;
  warmCreateStart: Latency;
  /** The same from a pool of hyperstart VMs (one, kept beside the kata ones). */
  warmHyperstartCreateStart: Latency;
  idleVm: { vms: number; rssMiB: number; pssMiB: number; cpuPercent: number };
  refill: { vms: number; seconds: number; perMinute: number };
}

const BOOT_TIMEOUT_MS = 300_000;

const opts = { timeoutMs: BOOT_TIMEOUT_MS };
const monitor = { intervalMs: 1000, deadlineMs: 15_000 };

/** create+start of one sandbox on a backend, then its deletion (not timed). */
async function createStart(client: VcClient, host: string, id: string, backend: string, agent: 'kata' | 'hyperstart' = 'kata'): Promise<{ ms: number; vm?: { accel?: string; machine?: string; warm?: boolean } }> {
  const t = process.hrtime.bigint();
  const reply = await client.call('HostSandboxCreate', { host }, { sandbox: { id, agent, backend, monitor }, start: true }, opts);
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  await client.call('SandboxDelete', { sid: id }, { force: true }, opts);
  return { ms, vm: reply.sandbox?.vm };
}

const kib = (pid: number, field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? NaN);

/** utime + stime of a process, in clock ticks (100 per second). */
const cpuTicks = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]);
};

async function until(what: string, test: () => boolean): Promise<void> {
  const end = Date.now() + BOOT_TIMEOUT_MS;
  while (!test()) {
    if (Date.now() > end) throw new Error(`bench: ${what} did not happen in time`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function benchVm(servers: string, client: VcClient, dir: string, counts: { cold: number; warm: number; pool: number }): Promise<VmFigures | undefined> {
  if (!findProgram('qemu-system-x86_64')) {
    process.stderr.write('bench: no qemu-system-x86_64, vm figures skipped (npm run setup installs it)\n');
    return undefined;
  }
  const log = pino({ level: 'silent' });
  const namespace: number[] = [];
  const cold: number[] = [];
  const warm: number[] = [];
  const warmHyperstart: number[] = [];
  let accel = '';
  let machine = '';
  const coldHost = await RuntimeHost.start({ servers, host: 'bench-vm-cold', runRoot: join(dir, 'vm-cold'), log, commandDeadlineMs: BOOT_TIMEOUT_MS });
  try {
    for (let i = 0; i < 5; i++) namespace.push((await createStart(client, 'bench-vm-cold', `ns-${i}`, 'namespace')).ms);
    for (let i = 0; i < counts.cold; i++) {
      process.stderr.write(`bench: cold VM ${i + 1}/${counts.cold}...\n`);
      const r = await createStart(client, 'bench-vm-cold', `cold-${i}`, 'vm');
      if (r.vm?.warm) throw new Error('bench: a cold sample came from a pool');
      accel = r.vm?.accel ?? '';
      machine = r.vm?.machine ?? '';
      cold.push(r.ms);
    }
  } finally {
    await coldHost.stop();
  }

  const warmHost = await RuntimeHost.start({ servers, host: 'bench-vm-warm', runRoot: join(dir, 'vm-warm'), log, vm: { pool: { kata: counts.pool, hyperstart: 1 } }, commandDeadlineMs: BOOT_TIMEOUT_MS });
  let idleVm: VmFigures['idleVm'];
  let refill: VmFigures['refill'];
  try {
    const pool = () => warmHost.vm.pool.status();
    const full = () => pool().ready === pool().size;
    process.stderr.write(`bench: filling a pool of ${counts.pool} kata VMs and a hyperstart one...\n`);
    await until('the pool filling', full);
    // Idle for a moment: what a waiting VM costs the host.
    await new Promise((r) => setTimeout(r, 3000));
    const pids = warmHost.vm.pool.idlePids('kata');
    const rss = pids.map((p) => kib(p, 'Rss'));
    const pss = pids.map((p) => kib(p, 'Pss'));
    const mean = (xs: number[]) => Math.round(xs.reduce((a, b) => a + b, 0) / xs.length / 1024);
    // CPU an idle VM takes from the host (its guest's timer ticks, the agent's idle loop),
    // over 10 s: about one 5 s window in eight shows a spike of a few %.
    const before = pids.map(cpuTicks);
    await new Promise((r) => setTimeout(r, 10_000));
    const cpuPercent = Math.round((pids.map(cpuTicks).reduce((a, t, i) => a + t - before[i]!, 0) / pids.length / 100 / 10) * 1000) / 10;
    idleVm = { vms: pids.length, rssMiB: mean(rss), pssMiB: mean(pss), cpuPercent };
    for (let i = 0; i < counts.warm; i++) {
      for (const [agent, into] of [['kata', warm], ['hyperstart', warmHyperstart]] as const) {
        await until('the pool refilling', full);
        const r = await createStart(client, 'bench-vm-warm', `warm-${agent}-${i}`, 'vm', agent);
        if (!r.vm?.warm) throw new Error(`bench: a warm ${agent} sample was booted cold`);
        into.push(r.ms);
      }
    }
    // Refill rate: take every kata VM at once, time until the pool is full again.
    await until('the pool refilling', full);
    const taken = await Promise.all(
      Array.from({ length: counts.pool }, (_, i) =>
        client.call('HostSandboxCreate', { host: 'bench-vm-warm' }, { sandbox: { id: `take-${i}`, agent: 'kata', backend: 'vm', monitor }, start: true }, opts),
      ),
    );
    const t = Date.now();
    await until('the pool refilling', full);
    const seconds = (Date.now() - t) / 1000;
    refill = { vms: counts.pool, seconds: Math.round(seconds * 10) / 10, perMinute: Math.round((counts.pool / seconds) * 60 * 10) / 10 };
    await Promise.all(taken.map((_, i) => client.call('SandboxDelete', { sid: `take-${i}` }, { force: true }, opts)));
  } finally {
    await warmHost.stop();
  }
  return { accel, machine, namespaceCreateStart: summarize(namespace), coldCreateStart: summarize(cold), warmCreateStart: summarize(warm), warmHyperstartCreateStart: summarize(warmHyperstart), idleVm, refill };
}

export function vmTable(v: VmFigures | undefined): string[] {
  if (!v) return [];
  const cell = (l: Latency) => `${l.p50} / ${l.p99} (n=${l.n})`;
  return [
    `## vm backend, kata agent unless named (${v.machine}, ${v.accel.toUpperCase()})`,
    '',
    '| figure | value | target |',
    '|---|---|---|',
    `| sandbox create+start, namespace backend (p50 / p99 ms) | ${cell(v.namespaceCreateStart)} | for comparison |`,
    `| sandbox create+start, cold VM (p50 / p99 ms) | ${cell(v.coldCreateStart)} | measured |`,
    `| sandbox create+start, warm pool (p50 / p99 ms) | ${cell(v.warmCreateStart)} | p50 under 50 ms |`,
    ...(v.warmHyperstartCreateStart ? [`| the same, hyperstart agent (p50 / p99 ms) | ${cell(v.warmHyperstartCreateStart)} | measured |`] : []),
    `| host memory per idle kata VM (qemu, mean of ${v.idleVm.vms}) | RSS ${v.idleVm.rssMiB} MiB, PSS ${v.idleVm.pssMiB} MiB | measured |`,
    `| host CPU per idle kata VM (qemu, mean of ${v.idleVm.vms}, over 10 s) | ${v.idleVm.cpuPercent} % of a core | measured |`,
    `| pool refill (${v.refill.vms} VMs taken at once) | ${v.refill.perMinute} VMs/min (${v.refill.seconds} s) | measured |`,
    '',
  ];
}
