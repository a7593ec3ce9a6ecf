// A noop sandbox's monitor never raises a false alarm, however many intervals pass.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { subjects } from '../../bus/subjects.js';
import { readEvents } from '../../bus/event-reader.js';
import { startTestServer, type TestServer } from '../helpers/nats.js';
import { Client, startTestHost, type TestHost } from '../helpers/runtime.js';

let server: TestServer;
let host: TestHost;
let client: Client;

beforeAll(async () => {
  server = await startTestServer();
  host = await startTestHost(server.url);
  client = await Client.connect(server.url);
});

afterAll(async () => {
  await client?.close();
  await host?.stop();
  await server?.dispose();
});

describe('monitor of a noop sandbox', () => {
  it('stays quiet over a hundred intervals, through pause and resume', async () => {
    const r = await client.request(subjects.sandboxCreate(), {
      sandbox: { id: 'quiet', monitor: { intervalMs: 10, deadlineMs: 20 } },
      start: true,
    });
    expect(r.ok).toBe(true);
    await new Promise((res) => setTimeout(res, 600));
    expect((await client.request(subjects.sandboxOp('quiet', 'pause'))).ok).toBe(true);
    await new Promise((res) => setTimeout(res, 100));
    expect((await client.request(subjects.sandboxOp('quiet', 'resume'))).ok).toBe(true);
    await new Promise((res) => setTimeout(res, 600));
    const status = await client.request(subjects.sandboxOp('quiet', 'status'));
    expect(status).toMatchObject({ ok: true, sandbox: { state: 'running' } });
    const types = [];
    for await (const e of readEvents(client.nc, { sandboxId: 'quiet' })) types.push(e.event.type);
    expect(types).toEqual(['create', 'start', 'pause', 'resume']);
  });
});
