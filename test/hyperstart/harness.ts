// Test wiring for the hyperstart driver: a temp run directory, a driver with a recording
// listener, and (for the real-guest suites) the built guest as a plain child process.
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, type Socket } from 'node:net';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { ExitInfo } from '../../actors/agents/agent.js';
import { HyperstartAgent, type HyperstartOptions } from '../../actors/agents/hyperstart.js';
import type { ContainerSpec, SandboxSpec } from '../../machines/specs.js';

export interface Recorded {
  output: Map<string, { stdout: Buffer[]; stderr: Buffer[] }>;
  exits: Array<{ cid: string; execId: string; exit: ExitInfo }>;
  lost: string[];
}

export function sandboxSpec(id: string): SandboxSpec {
  return {
    id,
    agent: 'hyperstart',
    agentConfig: {},
    backend: 'process',
    hostname: `${id}-host`,
    monitor: { intervalMs: 1000, deadlineMs: 1000, policy: 'keep' },
    annotations: {},
    containers: [],
  };
}

export function containerSpec(id: string, args: string[], extra: Partial<ContainerSpec> = {}): ContainerSpec {
  return { id, args, env: [], cwd: '', user: '', terminal: false, rootfs: '', annotations: {}, ...extra };
}

export interface DriverSetup {
  dir: string;
  agent: HyperstartAgent;
  rec: Recorded;
  /** Text written so far on one stream of a process. */
  text(cid: string, execId: string, stream?: 'stdout' | 'stderr'): string;
  /** Resolves with the exit the listener got for a process. */
  exited(cid: string, execId: string): Promise<ExitInfo>;
  cleanup(): Promise<void>;
}

export async function setupDriver(
  config: Partial<{ readyTimeoutMs: number; callTimeoutMs: number; sockCtlName: string; sockTtyName: string }> = {},
  options: HyperstartOptions = {},
  sandbox: Partial<SandboxSpec> = {},
): Promise<DriverSetup> {
  const dir = mkdtempSync(join(tmpdir(), 'vh-'));
  const rec: Recorded = { output: new Map(), exits: [], lost: [] };
  const waiters: Array<() => void> = [];
  const agent = new HyperstartAgent(options);
  await agent.init({
    sandbox: { ...sandboxSpec('sb'), ...sandbox },
    config: { sockCtlName: '', sockTtyName: '', readyTimeoutMs: 5_000, callTimeoutMs: 10_000, ...config },
    runDir: dir,
    listener: {
      processExited: (cid, execId, exit) => {
        rec.exits.push({ cid, execId, exit });
        for (const w of waiters.splice(0)) w();
      },
      output: (cid, execId, stream, data) => {
        const k = `${cid}/${execId}`;
        if (!rec.output.has(k)) rec.output.set(k, { stdout: [], stderr: [] });
        rec.output.get(k)![stream].push(Buffer.from(data));
      },
      connectionLost: (msg) => rec.lost.push(msg),
    },
  });
  const exited = async (cid: string, execId: string): Promise<ExitInfo> => {
    for (;;) {
      const hit = rec.exits.find((e) => e.cid === cid && e.execId === execId);
      if (hit) return hit.exit;
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  return {
    dir,
    agent,
    rec,
    text: (cid, execId, stream = 'stdout') => Buffer.concat(rec.output.get(`${cid}/${execId}`)?.[stream] ?? []).toString('utf8'),
    exited,
    cleanup: async () => {
      await agent.disconnect();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface AdoptingDriver {
  agent: HyperstartAgent;
  exits: Array<{ cid: string; execId: string; exit: ExitInfo }>;
  /** Text written so far on the stdout streams of a container's init. */
  text(cid: string): string;
}

/** A second driver on the same run directory, as a restarted runtime makes (adopt it before use). */
export async function adoptingDriver(dir: string): Promise<AdoptingDriver> {
  const agent = new HyperstartAgent();
  const exits: AdoptingDriver['exits'] = [];
  const out = new Map<string, Buffer[]>();
  await agent.init({
    sandbox: sandboxSpec('sb'),
    config: { sockCtlName: '', sockTtyName: '', readyTimeoutMs: 5_000, callTimeoutMs: 10_000 },
    runDir: dir,
    listener: {
      processExited: (cid, execId, exit) => exits.push({ cid, execId, exit }),
      output: (cid, execId, stream, data) => {
        if (stream === 'stdout' && execId === cid) out.set(cid, [...(out.get(cid) ?? []), Buffer.from(data)]);
      },
    },
  });
  return { agent, exits, text: (cid) => Buffer.concat(out.get(cid) ?? []).toString('utf8') };
}

export interface GuestProcess {
  child: ChildProcess;
  /** Host pid of the guest itself (not of the unshare around it). */
  pid: number;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  /** Stops the guest if still running: SIGTERM (it ends its processes), SIGKILL if that hangs. */
  kill(): Promise<void>;
}

export interface GuestStart {
  /**
   * Run the guest as PID 1 of new pid and mount namespaces with its own /proc (as root),
   * as the namespace backend runs it: every container shares the guest's pid namespace.
   */
  pid1?: boolean;
  /** Root filesystems that get the guest's /proc bind-mounted at <root>/proc (pid1 only). */
  procIn?: string[];
}

const childOf = (pid: number) => {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return kids ? Number(kids.split(' ')[0]) : undefined;
  } catch {
    return undefined;
  }
};

/** Starts the built guest with the driver's own plan, as a backend would. */
export async function startGuest(agent: HyperstartAgent, extraArgs: string[] = [], opts: GuestStart = {}): Promise<GuestProcess> {
  const plan = await agent.createSandbox();
  const [file, ...args] = plan.command;
  const argv = opts.pid1
    ? [
        'unshare', '--pid', '--fork', '--mount-proc', '--kill-child', '--',
        'sh', '-c', 'while [ "$1" != -- ]; do mount --bind /proc "$1/proc" || exit 1; shift; done; shift; exec "$@"', 'va-guest',
        ...(opts.procIn ?? []), '--', file!, ...args, ...extraArgs,
      ]
    : [file!, ...args, ...extraArgs];
  const child = spawn(argv[0]!, argv.slice(1), { env: plan.env, stdio: ['ignore', 'ignore', 'pipe'] });
  const err: Buffer[] = [];
  child.stderr!.on('data', (d: Buffer) => err.push(d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => r({ code, signal })),
  );
  let pid = child.pid!;
  if (opts.pid1) {
    for (let i = 0; i < 2000 && childOf(child.pid!) === undefined && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 1));
    pid = childOf(child.pid!) ?? child.pid!;
  }
  return {
    child,
    pid,
    exit,
    stderr: () => Buffer.concat(err).toString('utf8'),
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // The guest itself ends its processes on SIGTERM (unshare would only SIGKILL it).
      for (const sig of ['SIGCONT', 'SIGTERM'] as const) {
        try {
          process.kill(pid, sig);
        } catch {
          // gone
        }
      }
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** A raw connection that collects every frame it receives. */
/** A raw connection that collects every frame it receives. */
export class Raw<F> {
  readonly frames: F[] = [];
  closed = false;
  private constructor(
    readonly socket: Socket,
    push: (chunk: Buffer) => F[],
  ) {
    socket.on('data', (c: Buffer) => this.frames.push(...push(c)));
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => {});
  }

  static async open<F>(path: string, decoder: { push(c: Uint8Array): F[] }): Promise<Raw<F>> {
    for (;;) {
      const s = await new Promise<Socket | undefined>((resolve) => {
        const sock = createConnection(path);
        sock.once('connect', () => resolve(sock));
        sock.once('error', () => resolve(undefined));
      });
      if (s) return new Raw(s, (c) => decoder.push(c));
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async next(match: (f: F) => boolean): Promise<F> {
    for (;;) {
      const i = this.frames.findIndex(match);
      if (i >= 0) return this.frames.splice(i, 1)[0]!;
      if (this.closed) throw new Error('connection closed');
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}


/**
 * The pid of the one process below `root` that runs `command` ("sleep 100": the program's
 * basename and its arguments), for a stock guest, whose replies carry no pid. Polls a while.
 */
export async function pidOf(root: number, command: string): Promise<number> {
  for (let i = 0; i < 500; i++) {
    const table: { pid: number; ppid: number; cmd: string }[] = [];
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').filter((a, j, all) => a !== '' || j < all.length - 1);
        table.push({ pid: Number(e), ppid, cmd: [basename(argv[0] ?? ''), ...argv.slice(1)].join(' ') });
      } catch {
        // gone
      }
    }
    const below = new Set([root]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const p of table) if (below.has(p.ppid) && !below.has(p.pid)) (below.add(p.pid), (grew = true));
    }
    const hits = table.filter((p) => below.has(p.pid) && p.pid !== root && p.cmd === command);
    if (hits.length === 1) return hits[0]!.pid;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no single process runs ${JSON.stringify(command)} below ${root}`);
}
