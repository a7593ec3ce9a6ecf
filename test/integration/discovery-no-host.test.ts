// Discovery on a bus where no runtime host serves: the server answers the request's inbox
// with an empty no-responders status, which is "no host", not an answer to decode.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { VcClient } from '../../bus/client.js';
import { startTestServer, type TestServer } from '../helpers/nats.js';

let server: TestServer;
let client: VcClient;

beforeAll(async () => {
  server = await startTestServer({ auth: false });
  client = await VcClient.connect({ servers: server.url, name: 'discovery-no-host' });
});

afterAll(async () => {
  await client?.close();
  await server?.dispose();
});

it('finds no host, and says so without failing, when none serves', async () => {
  expect(await client.discover('PING', 300)).toEqual([]);
  expect(await client.discover('INFO', 300)).toEqual([]);
});
