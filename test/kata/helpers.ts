// Starts the built kata guest agent as a plain child process on a unix socket in a temp
// dir (no sandbox backend), and stops it again leaving nothing behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, chmodSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { KataConnection } from '../../actors/agents/kata-client.js';
import type { AgentRequest } from '../../actors/agents/kata-client.js';

export const GUEST_MAIN = join(process.cwd(), 'dist/guest/kata-agent/main.js');

export interface Guest {
  /** Host pid of the agent process itself. */
  pid: number;
  dir: string;
  address: string;
  conn: KataConnection;
  stderr(): string;
  /** Resolves with the agent's exit code once it exited (a signal gives null). */
  exited(): Promise<number | null>;
  stop(): Promise<void>;
}

export interface GuestOptions {
  /** Extra agent flags, e.g. ['--cgroups', 'none']. */
  flags?: string[];
  /** Run the agent as PID 1 of new pid and mount namespaces (unshare, as root). */
  pid1?: boolean;
  /** How the listen address is written: unix://<path> (default), a bare path, or tcp on loopback. */
  listen?: 'unix' | 'bare' | 'tcp';
  dialTimeoutMs?: number;
}

function childOf(pid: number): number | undefined {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return kids ? Number(kids.split(' ')[0]) : undefined;
  } catch {
    return undefined;
  }
}

export async function startGuest(options: GuestOptions = {}): Promise<Guest> {
  const dir = mkdtempSync(join(tmpdir(), 'kata-t-'));
  const socket = join(dir, 'kata.sock');
  const listen = options.listen === 'tcp' ? 'tcp://127.0.0.1:0' : options.listen === 'bare' ? socket : `unix://${socket}`;
  const agentArgs = [GUEST_MAIN, '--listen', listen, ...(options.flags ?? [])];
  const [file, ...args] = options.pid1
    ? ['unshare', '--pid', '--fork', '--mount-proc', '--kill-child', '--', process.execPath, ...agentArgs]
    : [process.execPath, ...agentArgs];
  const child: ChildProcess = spawn(file!, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  let log = '';
  const listening = new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes('"msg":"listening"')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`guest exited (${code}) before listening: ${log}`)));
  });
  await listening;
  const port = /"msg":"listening"[^\n]*"port":(\d+)/.exec(log)?.[1];
  const address = options.listen === 'tcp' ? `tcp://127.0.0.1:${port}` : listen;
  let pid = child.pid!;
  if (options.pid1) {
    for (let i = 0; i < 1000 && childOf(child.pid!) === undefined; i++) await sleep(1);
    pid = childOf(child.pid!)!;
  }
  const conn = new KataConnection(address, options.dialTimeoutMs ?? 5000);
  const exited = new Promise<number | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
  return {
    pid,
    dir,
    address,
    conn,
    stderr: () => log,
    exited: () => exited,
    async stop() {
      conn.close();
      try {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone already
      }
      const done = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
      if (!done) {
        child.kill('SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Reads a process's stream to its end. */
export async function readAll(conn: KataConnection, containerId: string, execId: string, stream: 'stdout' | 'stderr' = 'stdout'): Promise<string> {
  let out = '';
  for (;;) {
    const { response } = await conn.call(stream === 'stdout' ? 'ReadStdout' : 'ReadStderr', { container_id: containerId, exec_id: execId, len: 4096 });
    if (!response.data?.length) return out;
    out += Buffer.from(response.data).toString();
  }
}

/** A CreateContainerRequest for a command on the guest's own root (or `root`). */
export function containerRequest(id: string, args: string[], extra: { root?: string; terminal?: boolean; env?: string[] } = {}): AgentRequest<'CreateContainer'> {
  return {
    container_id: id,
    exec_id: id,
    OCI: {
      Version: '1.0.1',
      Process: { Args: args, Env: extra.env ?? ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'], Cwd: '/', Terminal: !!extra.terminal },
      Root: { Path: extra.root ?? '' },
    },
  };
}

/** Creates and starts a container; resolves with nothing (the pid is in the trailer). */
export async function run(conn: KataConnection, id: string, args: string[], extra: Parameters<typeof containerRequest>[2] = {}): Promise<number> {
  await conn.call('CreateContainer', containerRequest(id, args, extra), 5000);
  const { trailers } = await conn.call('StartContainer', { container_id: id }, 5000);
  return Number(trailers.get('x-virtactors-pid')[0]);
}

/** A tiny root filesystem: busybox and its applet links, plus a marker file. */
export function buildBusyboxRootfs(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kata-rootfs-'));
  chmodSync(dir, 0o755); // other users run in it too
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find(existsSync);
  if (!busybox) throw new Error('busybox is missing: run `npm run setup` (it installs busybox-static)');
  mkdirSync(join(dir, 'bin'));
  copyFileSync(busybox, join(dir, 'bin/busybox'));
  chmodSync(join(dir, 'bin/busybox'), 0o755);
  for (const applet of ['sh', 'ls', 'cat', 'echo', 'sleep', 'id', 'pwd']) symlinkSync('busybox', join(dir, 'bin', applet));
  writeFileSync(join(dir, 'marker'), 'inside the rootfs\n');
  return dir;
}

/** Host pids below a process (by parent links), with their state letter. */
export function descendants(root: number): { pid: number; ppid: number; state: string; comm: string; cmdline: string }[] {
  const table: { pid: number; ppid: number; state: string; comm: string; cmdline: string }[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const [state = '', ppid = ''] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmdline = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').join(' ').trim();
      table.push({ pid: Number(e), ppid: Number(ppid), state, comm, cmdline });
    } catch {
      // gone
    }
  }
  const out: typeof table = [];
  const stack = [root];
  while (stack.length) {
    const p = stack.pop()!;
    for (const t of table) {
      if (t.ppid !== p) continue;
      out.push(t);
      stack.push(t.pid);
    }
  }
  return out;
}

/** Polls until `check()` holds (bounded, so a failure ends the test instead of hanging it). */
export async function eventually(check: () => boolean, tries = 500, everyMs = 10): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (check()) return true;
    await sleep(everyMs);
  }
  return check();
}
