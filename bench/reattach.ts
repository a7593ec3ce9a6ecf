// Restarts: how long a runtime host killed with SIGKILL takes, once started again on the
// same state, until every sandbox it owned answers (noop sandboxes and kata guests
// running containers), beside a host with nothing to reattach; and a soak of kill -9 /
// restart cycles with containers killed during each downtime, counting exit events lost
// and duplicated. The host runs as a process of its own (node dist/runtime/main.js).
import { readFile } from 'node:fs/promises';
import type { VcClient } from '../bus/client.js';
import type * as Bus from '../bus/messages.gen.js';
import { startHostProcess, type Child } from './processes.js';
import { sandboxProcesses } from '../test/helpers/processes.js';
import { round } from './stats.js';

export interface ReattachFigures {
  noopSandboxes: number;
  kataSandboxes: number;
  /** Containers running in each kata sandbox. */
  containersPerKata: number;
  /** Spawn of the restarted host to every sandbox answering a status, ms (one per cycle). */
  reattachToAllAnswering: { first: number; mean: number; max: number };
  /** Spawn of a host on an empty state to its first answer, ms: the floor of any restart. */
  emptyHostToAnswering: number;
  soak: { cycles: number; exitsDuringDowntime: number; lost: number; duplicated: number; wrongStatus: number };
}

export interface ReattachOptions {
  noop: number;
  kata: number;
  cycles: number;
  /** Kata sandboxes that get a container killed during each downtime. */
  exitsPerCycle: number;
}

const ms = (from: bigint) => Number(process.hrtime.bigint() - from) / 1e6;

async function inBatches<T>(items: T[], size: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

/** The host pid of a sandbox process running `/bin/sleep <tag>`. */
async function sleeper(sid: string, tag: string): Promise<number | undefined> {
  for (const pid of await sandboxProcesses(sid)) {
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv[0]?.endsWith('sleep') && argv[1] === tag) return pid;
  }
  return undefined;
}

async function kill9(host: Child): Promise<void> {
  process.kill(host.pid, 'SIGKILL');
  for (let i = 0; i < 500; i++) {
    try {
      process.kill(host.pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

export async function benchReattach(servers: string, client: VcClient, stateDir: string, o: ReattachOptions): Promise<ReattachFigures> {
  const hostName = 'bench-reattach';
  const start = () => startHostProcess(client, { servers, host: hostName, stateDir });

  // The floor: a host with nothing to reattach, spawn to answering.
  const t0 = process.hrtime.bigint();
  let host = await start();
  const emptyHostToAnswering = ms(t0);

  const noopIds = Array.from({ length: o.noop }, (_, i) => `rn${i}`);
  const kataIds = Array.from({ length: o.kata }, (_, i) => `rk${i}`);
  process.stderr.write(`bench: reattach: creating ${o.noop} noop and ${o.kata} kata sandboxes...\n`);
  await inBatches(noopIds, 50, (id) => client.call('SandboxCreate', {}, { sandbox: { id, containers: [{ id: 'c', args: ['true'] }] }, start: true }));
  await inBatches(kataIds, 2, (id) =>
    client.call('SandboxCreate', {}, { sandbox: { id, agent: 'kata', backend: 'namespace', containers: [{ id: 'c', args: ['sleep', '86400'] }] }, start: true }),
  );
  const all = [...noopIds, ...kataIds];

  const times: number[] = [];
  const expected = new Map<string, number>(); // "<sid>/<cid>" -> exit status
  let exitsDuringDowntime = 0;
  try {
    for (let cycle = 0; cycle < o.cycles; cycle++) {
      // Containers that will be killed while no host is attached.
      const victims = kataIds.slice(0, o.exitsPerCycle).map((sid) => ({ sid, cid: `e${cycle}`, tag: String(90000 + cycle) }));
      for (const v of victims) {
        await client.call('ContainerCreate', { sid: v.sid }, { container: { id: v.cid, args: ['sleep', v.tag] } });
        await client.call('ContainerStart', { sid: v.sid, cid: v.cid });
      }
      await kill9(host);
      for (const v of victims) {
        for (let i = 0; i < 200 && !(await sleeper(v.sid, v.tag)); i++) await new Promise((r) => setTimeout(r, 10));
        const pid = await sleeper(v.sid, v.tag);
        if (pid) {
          process.kill(pid, 'SIGKILL');
          expected.set(`${v.sid}/${v.cid}`, 137);
          exitsDuringDowntime++;
        }
      }
      const t = process.hrtime.bigint();
      host = await start();
      // Every sandbox answers a status.
      await inBatches(all, 100, async (sid) => {
        for (;;) {
          const r = await client.request('SandboxStatus', { sid });
          if (r.ok) return;
          await new Promise((res) => setTimeout(res, 5));
        }
      });
      times.push(ms(t));
      process.stderr.write(`bench: reattach: cycle ${cycle + 1}/${o.cycles}: ${round(times.at(-1)!)} ms\n`);
    }
    // Give the last downtime's exits time to arrive (kata: WaitProcess answers at once).
    await new Promise((r) => setTimeout(r, 1000));
    let lost = 0;
    let duplicated = 0;
    let wrongStatus = 0;
    for (const sid of kataIds.slice(0, o.exitsPerCycle)) {
      const events: Bus.Event[] = [];
      for await (const e of client.events({ sandboxId: sid })) events.push(e.event);
      for (const [key, status] of expected) {
        const [s, cid] = key.split('/');
        if (s !== sid) continue;
        const exits = events.filter((e) => e.type === 'exit' && e.containerId === cid && !e.execId);
        if (exits.length === 0) lost++;
        if (exits.length > 1) duplicated += exits.length - 1;
        if (exits.length > 0 && exits[0]!.exitStatus !== status) wrongStatus++;
      }
    }
    return {
      noopSandboxes: o.noop,
      kataSandboxes: o.kata,
      containersPerKata: 1,
      reattachToAllAnswering: { first: round(times[0] ?? 0), mean: round(times.reduce((a, b) => a + b, 0) / Math.max(1, times.length)), max: round(Math.max(0, ...times)) },
      emptyHostToAnswering: round(emptyHostToAnswering),
      soak: { cycles: o.cycles, exitsDuringDowntime, lost, duplicated, wrongStatus },
    };
  } finally {
    await inBatches(all, 20, (sid) => client.request('SandboxDelete', { sid }, { force: true }).catch(() => undefined));
    await host.stop();
  }
}

export function reattachTable(r: ReattachFigures | undefined): string[] {
  if (!r) return [];
  return [
    `## Restart after kill -9 (${r.noopSandboxes} noop and ${r.kataSandboxes} kata sandboxes, ${r.containersPerKata} running container each)`,
    '',
    '| figure | value | target |',
    '|---|---|---|',
    `| host spawned on an empty state to answering (ms) | ${r.emptyHostToAnswering} | the floor |`,
    `| restarted host spawned to every sandbox answering, first / mean / max of ${r.soak.cycles} (ms) | ${r.reattachToAllAnswering.first} / ${r.reattachToAllAnswering.mean} / ${r.reattachToAllAnswering.max} | under 2,000 |`,
    `| soak: ${r.soak.cycles} kill -9 / restart cycles, ${r.soak.exitsDuringDowntime} containers killed during the downtimes | lost ${r.soak.lost}, duplicated ${r.soak.duplicated}, wrong status ${r.soak.wrongStatus} | 0 and 0 |`,
    '',
  ];
}
