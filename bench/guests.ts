// Figures for agents with a real guest, measured through the bus exactly as a user
// drives them, on the namespace backend: sandbox create+start, container start to exit
// event, idle guest memory, monitor detection latency and the CPU cost of monitoring.
import { existsSync, readFileSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import type { VcClient } from '../bus/client.js';
import { subjects } from '../bus/subjects.js';
import type * as Bus from '../bus/messages.gen.js';
import type { RuntimeHost } from '../runtime/host.js';
import { round, rssMiB, summarize, type Latency } from './stats.js';

export interface GuestFigures {
  agent: string;
  sandboxCreateStart: Latency;
  /** Whether those sandboxes ran in a user namespace, as they do by default where the kernel allows it. */
  userNamespace: boolean;
  /** Through the OCI runtime (crun), as every container runs. */
  containerStartToExitEvent: Latency;
  /** The same, in the same run, in a sandbox whose guest runs processes without an OCI runtime (VC_OCI_RUNTIME=none). */
  containerStartToExitEventWithoutOci: Latency;
  /** The same, in the same run, through runc (VC_OCI_RUNTIME=runc); absent where runc is not installed. */
  containerStartToExitEventRunc?: Latency;
  idleGuestRssMiB: number;
  detectGuestKilled: Latency;
  detectGuestHung: Latency & { intervalMs: number; deadlineMs: number };
  /** CPU of monitoring: running (monitored) minus paused (not monitored), runtime and guests together. */
  monitoringCpu?: { sandboxes: number; intervalMs: number; seconds: number; percentOfOneCore: number; runtimePercent: number; guestsPercent: number; withGuestsIdlePercent: number };
}

export interface GuestBenchOptions {
  sandboxes: number;
  containers: number;
  faults: number;
  /** Sandboxes kept running while the CPU of monitoring is measured (0 skips it). */
  monitored: number;
  monitorSeconds: number;
}

/** Whether this host has runc (the guests find it in the same directories). */
function hasRunc(): boolean {
  return ['/usr/sbin/runc', '/usr/bin/runc', '/sbin/runc', '/bin/runc'].some((p) => existsSync(p));
}

const ms = (from: bigint) => Number(process.hrtime.bigint() - from) / 1e6;

/** Resolves when the first message arrives on a subject (core NATS, already subscribed). */
function firstMessage(nc: NatsConnection, subject: string): Promise<void> {
  const sub = nc.subscribe(subject, { max: 1 });
  return (async () => {
    for await (const _ of sub) return;
  })();
}


function cpuTicks(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  } catch {
    return 0;
  }
}

export async function benchGuests(client: VcClient, host: RuntimeHost, agent: 'kata' | 'hyperstart', o: GuestBenchOptions): Promise<GuestFigures> {
  const tag = agent.slice(0, 4);
  const spec = (id: string, extra: Partial<Bus.SandboxSpec> = {}): Bus.SandboxSpec => ({ id, agent, backend: 'namespace', ...extra });

  // Sandbox create+start, one after the other.
  const createStart: number[] = [];
  const inUserNamespace = new Set<boolean>();
  for (let i = 0; i < o.sandboxes; i++) {
    const t = process.hrtime.bigint();
    const reply = await client.call('SandboxCreate', {}, { sandbox: spec(`${tag}-cs-${i}`), start: true });
    createStart.push(ms(t));
    inUserNamespace.add(!!reply.sandbox?.userNamespace);
    await client.call('SandboxDelete', { sid: `${tag}-cs-${i}` }, { force: true });
  }

  // Container start → its exit event, for `true`: through crun, and beside it (alternating
  // round by round, in the same run) in a guest that runs processes without an OCI runtime
  // and in one that runs them through runc.
  const sid = `${tag}-ct`;
  const plain = `${tag}-ct-plain`;
  const viaRunc = `${tag}-ct-runc`;
  await client.call('SandboxCreate', {}, { sandbox: spec(sid), start: true });
  const withRuntime = async (id: string, runtime: string) => {
    const before = process.env.VC_OCI_RUNTIME;
    process.env.VC_OCI_RUNTIME = runtime;
    try {
      await client.call('SandboxCreate', {}, { sandbox: spec(id), start: true });
    } finally {
      if (before === undefined) delete process.env.VC_OCI_RUNTIME;
      else process.env.VC_OCI_RUNTIME = before;
    }
  };
  await withRuntime(plain, 'none');
  const runc = hasRunc();
  if (runc) await withRuntime(viaRunc, 'runc');
  const toExit: number[] = [];
  const toExitPlain: number[] = [];
  const toExitRunc: number[] = [];
  const startToExit = async (box: string, cid: string): Promise<number> => {
    await client.call('ContainerCreate', { sid: box }, { container: { id: cid, args: ['true'] } });
    const exited = firstMessage(client.nc, subjects.containerEvent(box, cid, 'exit'));
    const t = process.hrtime.bigint();
    await client.call('ContainerStart', { sid: box, cid });
    await exited;
    const took = ms(t);
    await client.call('ContainerDelete', { sid: box, cid });
    return took;
  };
  for (let i = -3; i < o.containers; i++) {
    const cid = `t${i + 3}`;
    const oci = await startToExit(sid, cid);
    const bare = await startToExit(plain, cid);
    const other = runc ? await startToExit(viaRunc, cid) : 0;
    if (i >= 0) {
      toExit.push(oci);
      toExitPlain.push(bare);
      if (runc) toExitRunc.push(other);
    }
  }
  await client.call('SandboxDelete', { sid: plain }, { force: true });
  if (runc) await client.call('SandboxDelete', { sid: viaRunc }, { force: true });
  const idleGuestRssMiB = rssMiB(host.registry.get(sid).backend.pid!);
  await client.call('SandboxDelete', { sid: sid }, { force: true });

  // Detection: guest killed (seen by the backend at once).
  const killed: number[] = [];
  for (let i = 0; i < o.faults; i++) {
    const id = `${tag}-kill-${i}`;
    await client.call('SandboxCreate', {}, { sandbox: spec(id), start: true });
    const failed = firstMessage(client.nc, subjects.sandboxEvent(id, 'fail'));
    const t = process.hrtime.bigint();
    process.kill(host.registry.get(id).backend.pid!, 'SIGKILL');
    await failed;
    killed.push(ms(t));
    await client.call('SandboxDelete', { sid: id });
  }

  // Detection: guest hung (SIGSTOP), default interval and deadline, all at once.
  const hungIds = Array.from({ length: o.faults }, (_, i) => `${tag}-hung-${i}`);
  for (const id of hungIds) await client.call('SandboxCreate', {}, { sandbox: spec(id), start: true });
  const settings = host.registry.get(hungIds[0]!).spec.monitor;
  const hung = await Promise.all(
    hungIds.map(async (id) => {
      const failed = firstMessage(client.nc, subjects.sandboxEvent(id, 'fail'));
      const pid = host.registry.get(id).backend.pid!;
      const t = process.hrtime.bigint();
      process.kill(pid, 'SIGSTOP');
      await failed;
      const took = ms(t);
      process.kill(pid, 'SIGCONT');
      return took;
    }),
  );
  for (const id of hungIds) await client.call('SandboxDelete', { sid: id });

  const figures: GuestFigures = {
    agent,
    sandboxCreateStart: summarize(createStart),
    userNamespace: (() => {
      if (inUserNamespace.size !== 1) throw new Error('bench: some sandboxes ran in a user namespace and some did not');
      return [...inUserNamespace][0]!;
    })(),
    containerStartToExitEvent: summarize(toExit),
    containerStartToExitEventWithoutOci: summarize(toExitPlain),
    ...(runc ? { containerStartToExitEventRunc: summarize(toExitRunc) } : {}),
    idleGuestRssMiB,
    detectGuestKilled: summarize(killed),
    detectGuestHung: { ...summarize(hung), intervalMs: settings.intervalMs, deadlineMs: settings.deadlineMs },
  };

  // CPU of monitoring many healthy sandboxes: this process plus every guest, over a window.
  if (o.monitored > 0) {
    const ids = Array.from({ length: o.monitored }, (_, i) => `${tag}-mon-${i}`);
    for (let i = 0; i < ids.length; i += 8) {
      await Promise.all(ids.slice(i, i + 8).map((id) => client.call('SandboxCreate', {}, { sandbox: spec(id), start: true })));
    }
    const pids = ids.map((id) => host.registry.get(id).backend.pid!);
    const ticksPerSecond = 100;
    /** CPU of this process and every guest over a window, as a share of one core. */
    const window = async () => {
      const cpu0 = process.cpuUsage();
      const guests0 = pids.reduce((a, p) => a + cpuTicks(p), 0);
      const t = process.hrtime.bigint();
      await new Promise((r) => setTimeout(r, o.monitorSeconds * 1000));
      const seconds = ms(t) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const guestSeconds = (pids.reduce((a, p) => a + cpuTicks(p), 0) - guests0) / ticksPerSecond;
      const hostSeconds = (cpu.user + cpu.system) / 1e6;
      return { seconds, percent: ((hostSeconds + guestSeconds) / seconds) * 100, hostPercent: (hostSeconds / seconds) * 100, guestPercent: (guestSeconds / seconds) * 100 };
    };
    const each = async (op: 'pause' | 'resume') => {
      for (let i = 0; i < ids.length; i += 8) await Promise.all(ids.slice(i, i + 8).map((id) => client.call(op === 'pause' ? 'SandboxPause' : 'SandboxResume', { sid: id })));
      await new Promise((r) => setTimeout(r, 2000));
    };
    // Paused sandboxes are not monitored: the same guests, idle, give the baseline. The
    // two are measured twice, alternating, after the new guests have settled.
    await new Promise((r) => setTimeout(r, 5000));
    const idleRuns: Array<Awaited<ReturnType<typeof window>>> = [];
    const monitoredRuns: Array<Awaited<ReturnType<typeof window>>> = [];
    for (let round = 0; round < 2; round++) {
      await each('pause');
      idleRuns.push(await window());
      await each('resume');
      monitoredRuns.push(await window());
    }
    const mean = (runs: typeof idleRuns) => ({
      seconds: runs.reduce((a, r) => a + r.seconds, 0),
      percent: runs.reduce((a, r) => a + r.percent, 0) / runs.length,
      hostPercent: runs.reduce((a, r) => a + r.hostPercent, 0) / runs.length,
      guestPercent: runs.reduce((a, r) => a + r.guestPercent, 0) / runs.length,
    });
    const idle = mean(idleRuns);
    const monitored = mean(monitoredRuns);
    figures.monitoringCpu = {
      sandboxes: o.monitored,
      intervalMs: settings.intervalMs,
      seconds: round(monitored.seconds, 1),
      percentOfOneCore: round(monitored.percent - idle.percent, 2),
      runtimePercent: round(monitored.hostPercent - idle.hostPercent, 2),
      guestsPercent: round(monitored.guestPercent - idle.guestPercent, 2),
      withGuestsIdlePercent: round(idle.percent, 2),
    };
    for (let i = 0; i < ids.length; i += 8) {
      await Promise.all(ids.slice(i, i + 8).map((id) => client.call('SandboxDelete', { sid: id }, { force: true })));
    }
  }
  return figures;
}
