// Hyperstart figures: the driver against the real guest started as a plain process on
// this machine (no namespaces), so that they show the protocol's and the guest's cost.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExitInfo } from '../actors/agents/agent.js';
import { HyperstartAgent } from '../actors/agents/hyperstart.js';
import { measure, round, summarize, type Latency } from './stats.js';

export interface HyperstartFigures {
  /** Guest process spawned → READY, VERSION and STARTPOD answered. */
  guestBootToStartPod: Latency;
  /** PING → ACK on an established connection. */
  ping: Latency;
  /** EXECCMD of `true` → its exit reported (status and EOF of both streams). */
  execTrue: Latency;
  /** NEWCONTAINER of `true` → exit → REMOVECONTAINER. */
  containerRunTrue: Latency;
  /** One process writing to stdout, through tty frames to the listener. */
  outputMiBPerSecond: number;
}

interface Guest {
  agent: HyperstartAgent;
  child: ChildProcess;
  exits: Map<string, (exit: ExitInfo) => void>;
  bytes: { n: number };
  dir: string;
}

async function boot(): Promise<Guest> {
  const dir = mkdtempSync(join(tmpdir(), 'vh-bench-'));
  const agent = new HyperstartAgent();
  const exits = new Map<string, (exit: ExitInfo) => void>();
  const bytes = { n: 0 };
  await agent.init({
    sandbox: {
      id: 'bench',
      agent: 'hyperstart',
      agentConfig: {},
      backend: 'process',
      hostname: 'bench',
      monitor: { intervalMs: 1000, deadlineMs: 1000, policy: 'keep' },
      annotations: {},
      containers: [],
    },
    config: { sockCtlName: '', sockTtyName: '', readyTimeoutMs: 10_000, callTimeoutMs: 30_000 },
    runDir: dir,
    listener: {
      processExited: (cid, execId, exit) => exits.get(`${cid}/${execId}`)?.(exit),
      output: (_c, _e, _s, data) => {
        bytes.n += data.byteLength;
      },
    },
  });
  const plan = await agent.createSandbox();
  const [file, ...args] = plan.command;
  const child = spawn(file!, args, { env: plan.env, stdio: 'ignore' });
  await agent.startSandbox(plan.endpoint);
  return { agent, child, exits, bytes, dir };
}

async function shutdown(g: Guest): Promise<void> {
  const exited = new Promise((r) => g.child.once('exit', r));
  await g.agent.stopSandbox().catch(() => g.child.kill('SIGKILL'));
  await exited;
  rmSync(g.dir, { recursive: true, force: true });
}

function exitOf(g: Guest, cid: string, execId: string): Promise<ExitInfo> {
  return new Promise((resolve) => g.exits.set(`${cid}/${execId}`, resolve));
}

const spec = (id: string, args: string[]) => ({ id, args, env: [], cwd: '', user: '', terminal: false, rootfs: '', annotations: {} });

export async function benchHyperstart(opts: { samples: number; boots: number; outputMiB: number }): Promise<HyperstartFigures> {
  const boots: number[] = [];
  for (let i = 0; i < opts.boots; i++) {
    const t = process.hrtime.bigint();
    const g = await boot();
    boots.push(Number(process.hrtime.bigint() - t) / 1e6);
    await shutdown(g);
  }

  const g = await boot();
  try {
    const ping = await measure(opts.samples, () => g.agent.check(AbortSignal.timeout(5_000)));

    await g.agent.createContainer(spec('idle', ['sleep', '100000']));
    await g.agent.startContainer('idle');
    const execTrue = await measure(opts.samples, async (i) => {
      const id = `e${i < 0 ? `w${-i}` : i}`;
      const done = exitOf(g, 'idle', id);
      await g.agent.exec('idle', { args: ['true'], env: [], cwd: '', user: '', terminal: false }, id);
      await done;
    });

    const containerRunTrue = await measure(Math.max(1, Math.floor(opts.samples / 4)), async (i) => {
      const id = `c${i < 0 ? `w${-i}` : i}`;
      const done = exitOf(g, id, id);
      await g.agent.createContainer(spec(id, ['true']));
      await g.agent.startContainer(id);
      await done;
      await g.agent.stopContainer(id);
    });

    const size = opts.outputMiB * 1024 * 1024;
    g.bytes.n = 0;
    const done = exitOf(g, 'idle', 'out');
    const t = process.hrtime.bigint();
    await g.agent.exec('idle', { args: ['head', '-c', String(size), '/dev/zero'], env: [], cwd: '', user: '', terminal: false }, 'out');
    await done;
    const seconds = Number(process.hrtime.bigint() - t) / 1e9;
    if (g.bytes.n !== size) throw new Error(`output bench received ${g.bytes.n} of ${size} bytes`);

    return {
      guestBootToStartPod: summarize(boots),
      ping,
      execTrue,
      containerRunTrue,
      outputMiBPerSecond: round(opts.outputMiB / seconds, 1),
    };
  } finally {
    await shutdown(g);
  }
}
