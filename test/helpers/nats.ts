// Real nats-server processes for the tests, on free loopback ports, in temp dirs.
// Every suite starts its own and stops it afterwards; nothing depends on a server that
// happens to be running.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startNatsServer, type NatsServer } from '../../runtime/nats-server.js';

export interface TestServer extends NatsServer {
  dir: string;
  /** Stops the server and removes its data. */
  dispose(): Promise<void>;
}

export async function startTestServer(): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'vc-nats-'));
  const server = await startNatsServer({ storeDir: dir });
  return Object.assign(server, {
    dir,
    async dispose() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  });
}

export interface TestCluster {
  nodes: NatsServer[];
  urls: string[];
  dispose(): Promise<void>;
}

/** A 3-node cluster with JetStream, routes on loopback. */
export async function startTestCluster(size = 3): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'vc-cluster-'));
  const name = `vc-test-${process.pid}`;
  // JetStream clustering wants every route configured up front.
  const ports: number[] = [];
  for (let i = 0; i < size; i++) ports.push(await freePort());
  const routes = ports.map((p) => `nats://127.0.0.1:${p}`);
  const nodes = await Promise.all(
    ports.map((port, i) =>
      startNatsServer({ storeDir: join(dir, `n${i}`), serverName: `n${i}`, cluster: { name, port, routes } }),
    ),
  );
  return {
    nodes,
    urls: nodes.map((n) => n.url),
    async dispose() {
      await Promise.all(nodes.map((n) => n.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
