// Processes the benchmarks start beside themselves: a runtime host as users run it
// (`node dist/runtime/main.js` joining the bench's server), and a raw NATS responder
// for the request/reply baseline, each in a process of its own so that its CPU time can
// be read from /proc and nothing shares the bench client's event loop.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { VcClient } from '../bus/client.js';

/** CPU time (user + system) a process used so far, in microseconds. */
export function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1e6) / 100; // USER_HZ is 100 on Linux
}

export interface Child {
  readonly pid: number;
  stop(): Promise<void>;
}

function child(proc: ChildProcess): Child {
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    pid: proc.pid!,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A runtime host process on the given server; resolves once it answers commands. */
export async function startHostProcess(
  client: VcClient,
  opts: { servers: string; host: string; stateDir: string; env?: Record<string, string>; /** e.g. --cpu-prof, to profile the host */ nodeArgs?: string[] },
): Promise<Child> {
  const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), 'dist/runtime/main.js'], {
    env: { ...process.env, NATS_URL: opts.servers, VC_HOST: opts.host, VC_STATE_DIR: opts.stateDir, LOG_LEVEL: 'warn', ...opts.env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const host = child(proc);
  for (let i = 0; i < 200; i++) {
    const found = await client.discover('PING', 100);
    if (found.some((f) => (f.metadata as { host?: string } | undefined)?.host === opts.host)) return host;
    if (proc.exitCode !== null) break;
  }
  await host.stop();
  throw new Error(`runtime host ${opts.host} did not come up`);
}

// The responder: answers every request on bench.echo with a small JSON reply, as a
// runtime answers a status, from a plain NATS connection.
const ECHO = `
const { connect } = await import(process.env.NATS_TRANSPORT);
const nc = await connect({ servers: process.env.NATS_URL, noAsyncTraces: true });
const reply = new TextEncoder().encode('{"ok":true}');
nc.subscribe('bench.echo', { callback: (_e, m) => m.respond(reply) });
await nc.flush();
process.stdout.write('ready\\n');
process.on('SIGTERM', () => nc.close().then(() => process.exit(0)));
`;

export async function startEchoProcess(servers: string): Promise<Child> {
  const transport = import.meta.resolve('@nats-io/transport-node');
  const proc = spawn(process.execPath, ['--input-type=module', '-e', ECHO], {
    env: { ...process.env, NATS_URL: servers, NATS_TRANSPORT: transport },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.once('data', () => resolve());
    proc.once('exit', (code) => reject(new Error(`echo responder exited with ${code}`)));
  });
  return child(proc);
}
