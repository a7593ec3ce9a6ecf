// Real nats-server processes for the tests, on free loopback ports, in temp dirs.
// Every suite starts its own and stops it afterwards; nothing depends on a server that
// happens to be running. Authentication is on unless a suite asks for it off: the
// tests run with the credentials and roles users get.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startNatsServer, type NatsServer } from '../../runtime/nats-server.js';
import { authFiles, ensureAuthority, newRoutePassword, writePrivateFile } from '../../bus/auth-files.js';
import { createCreds, serverAuthConfig, type Authority } from '../../bus/credentials.js';

/** An authority in a temp dir with a `.creds` file per role. */
export interface TestAuth {
  dir: string;
  authority: Authority;
  /** `.creds` files: host, operator and viewer. */
  host: string;
  operator: string;
  viewer: string;
}

export async function createTestAuth(dir: string): Promise<TestAuth> {
  const { authority } = await ensureAuthority(dir);
  const files = authFiles(dir);
  writePrivateFile(files.creds('viewer'), await createCreds(authority, 'viewer', 'viewer'));
  return { dir, authority, host: files.creds('host'), operator: files.creds('operator'), viewer: files.creds('viewer') };
}

export interface TestServer extends NatsServer {
  dir: string;
  /** Undefined when the server was started without authentication. */
  auth?: TestAuth;
  /** Stops the server and removes its data. */
  dispose(): Promise<void>;
}

export async function startTestServer(opts: { auth?: boolean; maxFileStore?: number } = {}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'vc-nats-'));
  const auth = opts.auth === false ? undefined : await createTestAuth(join(dir, 'auth'));
  const server = await startNatsServer({ storeDir: join(dir, 'nats'), auth: auth && serverAuthConfig(auth.authority), maxFileStore: opts.maxFileStore });
  return Object.assign(server, {
    dir,
    auth,
    async dispose() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  });
}

/**
 * Starts a server again over the same store directory, port and authority: after a
 * `kill -9` of `server.process`, what an operator's restart does. Dispose the new one.
 */
export async function restartTestServer(server: TestServer): Promise<TestServer> {
  const again = await startNatsServer({ storeDir: join(server.dir, 'nats'), port: server.port, auth: server.auth && serverAuthConfig(server.auth.authority) });
  return Object.assign(again, {
    dir: server.dir,
    auth: server.auth,
    async dispose() {
      await again.stop();
      rmSync(server.dir, { recursive: true, force: true });
    },
  });
}

/** Kills a nats-server with SIGKILL (no clean shutdown) and waits until it is gone. */
export async function killServer(server: NatsServer): Promise<void> {
  if (server.process.exitCode !== null || server.process.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => server.process.once('exit', () => resolve()));
  server.process.kill('SIGKILL');
  await gone;
}

export interface TestCluster {
  nodes: NatsServer[];
  urls: string[];
  auth: TestAuth;
  dispose(): Promise<void>;
}

/** A 3-node cluster with JetStream, routes on loopback, clients and routes authenticated. */
export async function startTestCluster(size = 3): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'vc-cluster-'));
  const name = `vc-test-${process.pid}`;
  const auth = await createTestAuth(join(dir, 'auth'));
  const routeAuth = { user: 'route', password: newRoutePassword() };
  // JetStream clustering wants every route configured up front.
  const ports: number[] = [];
  for (let i = 0; i < size; i++) ports.push(await freePort());
  const routes = ports.map((p) => `nats-route://127.0.0.1:${p}`);
  const nodes = await Promise.all(
    ports.map((port, i) =>
      startNatsServer({
        storeDir: join(dir, `n${i}`),
        serverName: `n${i}`,
        auth: serverAuthConfig(auth.authority),
        cluster: { name, port, routes, auth: routeAuth },
      }),
    ),
  );
  return {
    nodes,
    urls: nodes.map((n) => n.url),
    auth,
    async dispose() {
      await Promise.all(nodes.map((n) => n.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
