// Starts a private nats-server process on a loopback port: the embedded default of
// `npm start`, and the servers the tests run against (single node or a cluster).
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { privateDir, writePrivateFile } from '../bus/auth-files.js';
import { clusterAuthConfig, type RouteAuth } from '../bus/credentials.js';

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
  /** JetStream's file store limit in bytes (the server's default: most of the disk). */
  maxFileStore?: number;
  /** Client port; 0 picks a free one. */
  port?: number;
  serverName?: string;
  /**
   * Server authentication (serverAuthConfig() of an authority): clients must present
   * credentials it trusts. Without it the server lets anyone in (the benchmarks' baseline).
   */
  auth?: string;
  /** Routes to the other nodes; with `auth`, the user and password every route presents. */
  cluster?: { name: string; port?: number; routes: string[]; auth?: RouteAuth };
  /** Forwarded to the process (e.g. ['-DV'] for protocol traces). */
  extraArgs?: string[];
  binary?: string;
  startTimeoutMs?: number;
  /**
   * A process group of its own: a Ctrl-C in the terminal reaches the runtime only, which
   * stops the server after itself; a runtime killed outright leaves it for the next start.
   */
  detached?: boolean;
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

/**
 * A connection that stops answering the server's pings (a stopped or hung runtime host)
 * is dropped after about three intervals rather than the default four minutes, and so
 * leaves the queue group: later commands no longer land on it (docs/reattach.md).
 */
export const PING_SETTINGS = ['ping_interval: "2s"', 'ping_max: 2'];

/** The server's configuration: loopback only, JetStream on, auth and routes as asked. */
export function natsServerConfig(opts: NatsServerOptions): string {
  const store = `store_dir: ${JSON.stringify(opts.storeDir)}${opts.maxFileStore ? `, max_file_store: ${opts.maxFileStore}` : ''}`;
  const lines = [`listen: "127.0.0.1:${opts.port || -1}"`, `jetstream { ${store} }`, ...PING_SETTINGS];
  if (opts.serverName) lines.push(`server_name: ${JSON.stringify(opts.serverName)}`);
  if (opts.auth) lines.push(opts.auth);
  if (opts.cluster) {
    const { name, port, routes, auth } = opts.cluster;
    lines.push(
      'cluster {',
      `  name: ${JSON.stringify(name)}`,
      `  listen: "127.0.0.1:${port || -1}"`,
      auth ? clusterAuthConfig(auth, routes) : `routes: [${routes.map((r) => JSON.stringify(r)).join(', ')}]`,
      '}',
    );
  }
  return `${lines.join('\n')}\n`;
}

export async function startNatsServer(opts: NatsServerOptions): Promise<NatsServer> {
  // The configuration may hold the route password: it lives beside the data, 0600 in 0700.
  privateDir(opts.storeDir);
  const configFile = join(opts.storeDir, 'nats-server.conf');
  writePrivateFile(configFile, natsServerConfig(opts));
  const args = ['-c', configFile, ...(opts.extraArgs ?? [])];
  const child = spawn(opts.binary ?? natsServerBinary(), args, { stdio: ['ignore', 'ignore', 'pipe'], detached: opts.detached ?? false });
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
