// The private nats-server of `npm start`: one per state directory. A start finds the
// server an earlier start left running (its pid and URL files in the state directory) and
// reuses it when it answers, or stops it when it does not; only then is a new one
// started, so two servers never share one JetStream store.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { stateFiles } from '../bus/connection.js';
import { isAlive } from '../actors/processes.js';
import { startNatsServer } from './nats-server.js';

export interface PrivateServer {
  url: string;
  pid: number;
  /** Whether an earlier start's server was taken over. */
  reused: boolean;
  /** Stops the server and removes its pid and URL files. */
  stop(): Promise<void>;
}

const readOr = (path: string) => {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
};

/** Whether pid is the nats-server running this state directory's configuration. */
function isOurServer(pid: number, configFile: string): boolean {
  const argv = readOr(`/proc/${pid}/cmdline`).split('\0');
  return isAlive(pid) && /nats-server$/.test(argv[0] ?? '') && argv.includes(configFile);
}

/** Whether a NATS server answers at url (it greets every connection with INFO). */
function answers(url: string, timeoutMs = 2000): Promise<boolean> {
  const { hostname, port } = new URL(url.replace(/^nats:/, 'http:'));
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('data', (d) => done(d.toString('latin1').startsWith('INFO ')));
    socket.once('error', () => done(false));
  });
}

/** SIGTERM (nats-server shuts down cleanly on it), then SIGKILL after a grace period. */
async function stopPid(pid: number, configFile: string, graceMs = 5000): Promise<void> {
  const send = (sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // gone
    }
  };
  if (!isOurServer(pid, configFile)) return;
  send('SIGTERM');
  // Until the process is gone (a server tearing down may already show no command line).
  for (let waited = 0; isAlive(pid); waited += 20) {
    if (waited === graceMs) send('SIGKILL');
    await sleep(20);
  }
}

export async function privateServer(dir: string, opts: { port: number; auth: string; log: Logger }): Promise<PrivateServer> {
  const files = stateFiles(dir);
  const storeDir = join(dir, 'nats');
  const configFile = join(storeDir, 'nats-server.conf');
  const handle = (url: string, pid: number, reused: boolean): PrivateServer => ({
    url,
    pid,
    reused,
    async stop() {
      await stopPid(pid, configFile);
      rmSync(files.url, { force: true });
      rmSync(files.pid, { force: true });
    },
  });

  const oldPid = Number.parseInt(readOr(files.pid), 10);
  const oldUrl = readOr(files.url);
  if (Number.isInteger(oldPid) && isOurServer(oldPid, configFile)) {
    if (oldUrl && (await answers(oldUrl))) {
      opts.log.info({ pid: oldPid, url: oldUrl }, 'reusing the private nats-server an earlier start left running');
      return handle(oldUrl, oldPid, true);
    }
    opts.log.warn({ pid: oldPid }, 'the private nats-server an earlier start left does not answer: stopping it');
    await stopPid(oldPid, configFile);
  }
  const start = (port?: number) => startNatsServer({ storeDir, port, auth: opts.auth, detached: true });
  const server = await start(opts.port).catch(() => start());
  const pid = server.process.pid!;
  writeFileSync(files.pid, `${pid}\n`);
  writeFileSync(files.url, `${server.url}\n`);
  return handle(server.url, pid, false);
}
