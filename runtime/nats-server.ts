// Starts a private nats-server process on a loopback port: the embedded default of
// `npm start`, and the servers the tests run against (single node or a cluster).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';

/** A port free on loopback right now (for cluster routes, which must be known ahead). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface NatsServerOptions {
  /** Directory for JetStream data. */
  storeDir: string;
  /** Client port; 0 picks a free one. */
  port?: number;
  serverName?: string;
  cluster?: { name: string; port?: number; routes: string[] };
  /** Forwarded to the process (e.g. ['-DV'] for protocol traces). */
  extraArgs?: string[];
  binary?: string;
  startTimeoutMs?: number;
}

export interface NatsServer {
  url: string;
  /** nats-route URL of this node, when clustered. */
  routeUrl?: string;
  port: number;
  readonly process: ChildProcess;
  /** Stops the server and waits for it to exit. */
  stop(): Promise<void>;
}

export function natsServerBinary(): string {
  return process.env.NATS_SERVER_BIN || 'nats-server';
}

export async function startNatsServer(opts: NatsServerOptions): Promise<NatsServer> {
  mkdirSync(opts.storeDir, { recursive: true });
  const args = ['-a', '127.0.0.1', '-p', String(opts.port || -1), '-js', '-sd', opts.storeDir];
  if (opts.serverName) args.push('-n', opts.serverName);
  if (opts.cluster) {
    args.push('--cluster_name', opts.cluster.name, '--cluster', `nats://127.0.0.1:${opts.cluster.port || -1}`);
    if (opts.cluster.routes.length) args.push('--routes', opts.cluster.routes.join(','));
  }
  args.push(...(opts.extraArgs ?? []));
  const child = spawn(opts.binary ?? natsServerBinary(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let onEarlyExit: ((code: number | null) => void) | undefined;
  let clientUrl = '';
  let routeUrl: string | undefined;
  const log: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`nats-server did not start within ${opts.startTimeoutMs ?? 10_000} ms:\n${log.join('\n')}`));
    }, opts.startTimeoutMs ?? 10_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run nats-server (${err.message}); run \`npm run setup\` or set NATS_SERVER_BIN`));
    });
    onEarlyExit = (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited with ${code}:\n${log.join('\n')}`));
    };
    child.once('exit', onEarlyExit);
    const lines = createInterface({ input: child.stderr! });
    lines.on('line', (line) => {
      if (log.length < 200) log.push(line);
      const client = /Listening for client connections on (\S+)/.exec(line);
      if (client) clientUrl = `nats://${client[1]}`;
      const route = /Listening for route connections on (\S+)/.exec(line);
      if (route) routeUrl = `nats://${route[1]}`;
      if (line.includes('Server is ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  if (onEarlyExit) child.off('exit', onEarlyExit);
  const port = Number(clientUrl.split(':').pop());
  return {
    url: clientUrl,
    routeUrl,
    port,
    process: child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
