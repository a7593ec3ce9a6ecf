// Kata guest figures: the driver against the real guest agent started as a plain process
// on this machine (no namespaces), so that they show the protocol's and the guest's own
// cost: start to listening, idle memory, and round trips of the common calls.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExitInfo } from '../actors/agents/agent.js';
import { decodeAgentConfig } from '../actors/agents/agent-type.js';
import { KataAgent } from '../actors/agents/kata.js';
import { KataConnection } from '../actors/agents/kata-client.js';
import { measure, rssMiB, summarize, type Latency } from './stats.js';

export interface KataGuestFigures {
  /** `node dist/guest/kata-agent/main.js` spawned → its socket accepts a gRPC connection. */
  guestStartToListening: Latency;
  /** Guest spawned → the driver's startSandbox done (dial retry + CreateSandbox). */
  guestStartToSandbox: Latency;
  /** Resident memory of an idle guest with a sandbox created, MiB. */
  idleGuestRssMiB: number;
  /** Health.Check on a long-lived connection. */
  check: Latency;
  /** CreateContainer + StartContainer of `true` → exit reported → RemoveContainer, through the driver. */
  containerRunTrue: Latency;
  /** ExecProcess of `true` → its exit reported. */
  execTrue: Latency;
}

export interface KataGuestBenchOptions {
  boots: number;
  samples: number;
}


interface Booted {
  agent: KataAgent;
  child: ChildProcess;
  dir: string;
  exits: Map<string, (exit: ExitInfo) => void>;
  listeningMs: number;
  sandboxMs: number;
}

async function boot(longLiveConn: boolean): Promise<Booted> {
  const dir = mkdtempSync(join(tmpdir(), 'vk-bench-'));
  const exits = new Map<string, (exit: ExitInfo) => void>();
  const agent = new KataAgent();
  await agent.init({
    sandbox: {
      id: 'bench',
      agent: 'kata',
      agentConfig: {},
      backend: 'process',
      hostname: 'bench',
      monitor: { intervalMs: 1000, deadlineMs: 1000, policy: 'keep' },
      annotations: {},
      containers: [],
    },
    config: decodeAgentConfig('kata', { longLiveConn }),
    runDir: dir,
    listener: { processExited: (cid, execId, exit) => exits.get(`${cid}/${execId}`)?.(exit) },
  });
  const plan = await agent.createSandbox();
  const [file, ...args] = plan.command;
  const t = process.hrtime.bigint();
  const child = spawn(file!, args, { env: plan.env, stdio: 'ignore' });
  const probe = new KataConnection(plan.endpoint.grpcAddress!, 10_000);
  await probe.ready();
  const listeningMs = Number(process.hrtime.bigint() - t) / 1e6;
  probe.close();
  await agent.startSandbox(plan.endpoint);
  const sandboxMs = Number(process.hrtime.bigint() - t) / 1e6;
  await agent.connect();
  return { agent, child, dir, exits, listeningMs, sandboxMs };
}

async function shutdown(g: Booted): Promise<void> {
  await g.agent.stopSandbox().catch(() => {});
  await g.agent.disconnect();
  const exited = new Promise((r) => g.child.once('exit', r));
  g.child.kill('SIGTERM');
  await exited;
  rmSync(g.dir, { recursive: true, force: true });
}

function exitOf(g: Booted, cid: string, execId: string): Promise<ExitInfo> {
  return new Promise((resolve) => g.exits.set(`${cid}/${execId}`, resolve));
}

const container = (id: string, args: string[]) => ({ id, args, env: [], cwd: '/', user: '', terminal: false, rootfs: '', annotations: {} });

export async function benchKataGuest(o: KataGuestBenchOptions): Promise<KataGuestFigures> {
  const listening: number[] = [];
  const toSandbox: number[] = [];
  for (let i = 0; i < o.boots; i++) {
    const g = await boot(false);
    listening.push(g.listeningMs);
    toSandbox.push(g.sandboxMs);
    await shutdown(g);
  }

  const g = await boot(true);
  try {
    await sleep(500); // idle: start-up garbage collected
    const idleGuestRssMiB = rssMiB(g.child.pid!);
    const check = await measure(o.samples, () => g.agent.check(AbortSignal.timeout(5000)));
    const containerRunTrue = await measure(o.samples, async (i) => {
      const id = `t${i < 0 ? `w${-i}` : i}`;
      const exit = exitOf(g, id, id);
      await g.agent.createContainer(container(id, ['true']));
      await g.agent.startContainer(id);
      await exit;
      await g.agent.stopContainer(id);
    });
    await g.agent.createContainer(container('box', ['sleep', '3600']));
    await g.agent.startContainer('box');
    const execTrue = await measure(o.samples, async (i) => {
      const execId = `e${i < 0 ? `w${-i}` : i}`;
      const exit = exitOf(g, 'box', execId);
      await g.agent.exec('box', { args: ['true'], env: [], cwd: '/', user: '', terminal: false }, execId);
      await exit;
    });
    await g.agent.stopContainer('box');
    return {
      guestStartToListening: summarize(listening),
      guestStartToSandbox: summarize(toSandbox),
      idleGuestRssMiB,
      check,
      containerRunTrue,
      execTrue,
    };
  } finally {
    await shutdown(g);
  }
}
