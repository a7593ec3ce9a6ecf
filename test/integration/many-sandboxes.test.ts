// A host with thousands of sandboxes, on a server with credentials and roles: the list
// comes in pages that each fit one bus message, and a restarted host reads every record
// back (one KV watch: the host's credentials must let it answer the server's flow
// control, or the watch stalls after ~1.7 MB and the host never starts).
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VcClient } from '../../bus/client.js';
import { encode } from '../../bus/codec.js';
import { startTestServer, type TestServer } from '../helpers/nats.js';
import { connectClient, hostAuth, startTestHost, type TestHost } from '../helpers/runtime.js';

// About 1.5 MB of statuses: more than one list reply holds.
const COUNT = 5000;
const ids = Array.from({ length: COUNT }, (_, i) => `m${String(i).padStart(4, '0')}`);

describe(`${COUNT} sandboxes on one host`, () => {
  let server: TestServer;
  let client: VcClient;
  let host: TestHost | undefined;
  let firstRunRoot: string | undefined;
  beforeAll(async () => {
    server = await startTestServer();
    host = await startTestHost(server.url, { ...hostAuth(server), host: 'many' });
    client = await connectClient(server.url, server.auth?.operator);
    for (let i = 0; i < ids.length; i += 50) {
      await Promise.all(ids.slice(i, i + 50).map((id) => client.call('SandboxCreate', {}, { sandbox: { id, agent: 'noop' } })));
    }
  }, 120_000);
  afterAll(async () => {
    await client?.close();
    await host?.stop();
    await server?.dispose();
    if (firstRunRoot) rmSync(firstRunRoot, { recursive: true, force: true });
  }, 120_000);

  it('lists them in pages that each fit one message, every one once, in id order', async () => {
    const first = await client.call('SandboxList', {}, {});
    expect(first.next).toBeTruthy();
    expect(encode(first).byteLength).toBeLessThan(client.nc.info!.max_payload);
    const all = await client.listSandboxes();
    expect(all.map((s) => s.id)).toEqual(ids);
    expect((await client.listSandboxes({ host: 'nobody' })).length).toBe(0);
  });

  it('reads every record back when the host restarts, and serves them', async () => {
    // The host goes, its sandboxes stay (as a kill or an upgrade leaves them).
    await host!.host.stop();
    firstRunRoot = host!.runRoot;
    host = await startTestHost(server.url, { ...hostAuth(server), host: 'many', runRoot: firstRunRoot });
    expect(host.host.registry.size).toBe(COUNT);
    expect((await client.call('SandboxStatus', { sid: ids.at(-1)! }, {})).sandbox).toMatchObject({ id: ids.at(-1), state: 'ready' });
  }, 60_000);
});
