// A runtime host as users run it (`node dist/runtime/main.js`), in a process of its own,
// so that a test can kill it for real (SIGKILL) and start another on the same state.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { VcClient } from '../../bus/client.js';

export interface HostProcess {
  readonly pid: number;
  readonly proc: ChildProcess;
  /** SIGKILL: the runtime dies with no chance to clean up (its guests stay). */
  kill9(): Promise<void>;
  /** SIGTERM: a clean stop (detaches; guests stay). */
  stop(): Promise<void>;
}

export interface HostProcessOptions {
  servers: string;
  host: string;
  stateDir: string;
  creds?: string;
  env?: Record<string, string>;
}

/** Spawns the runtime; resolves once it answers service discovery (after its reattach). */
export async function startHostProcess(client: VcClient, opts: HostProcessOptions): Promise<HostProcess> {
  const proc = spawn(process.execPath, ['dist/runtime/main.js'], {
    env: {
      ...process.env,
      NATS_URL: opts.servers,
      ...(opts.creds ? { NATS_CREDS: opts.creds } : {}),
      VC_HOST: opts.host,
      VC_STATE_DIR: opts.stateDir,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
      ...opts.env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = once(proc, 'exit');
  const handle: HostProcess = {
    pid: proc.pid!,
    proc,
    async kill9() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      await exited;
    },
  };
  // Bounded by time: with no host serving yet, discovery answers at once (no responders).
  for (const until = Date.now() + 60_000; Date.now() < until; await new Promise((r) => setTimeout(r, 20))) {
    const found = await client.discover('PING', 100);
    if (found.some((f) => (f.metadata as { host?: string } | undefined)?.host === opts.host)) return handle;
    if (proc.exitCode !== null) break;
  }
  await handle.kill9();
  throw new Error(`runtime host ${opts.host} did not come up`);
}
