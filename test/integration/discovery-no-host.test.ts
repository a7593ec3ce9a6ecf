// Discovery on a bus where no runtime host serves: the server answers the request's inbox
// with an empty no-responders status, which is "no host", not an answer to decode; and
// the probe that requests left unanswered make is one for all of them.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { VcClient, type CommandError } from '../../bus/client.js';
import { natsSubjects, subjects } from '../../bus/subjects.js';
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

it('asks once whether any host is there for the many requests that wait at once, not once each', async () => {
  // A subscriber that never answers (a stopped host): the requests wait, then probe.
  const quiet = await connect({ servers: server.url });
  let pings = 0;
  quiet.subscribe(subjects.publicCommands(), { callback: () => {} });
  quiet.subscribe(natsSubjects.serviceDiscovery(), { callback: () => void pings++ });
  await quiet.flush();
  try {
    const outcomes = await Promise.all(
      Array.from({ length: 200 }, (_, i) => client.call('SandboxStatus', { sid: `s${i}` }, {}, { timeoutMs: 10_000 }).then(() => 'ok', (err: CommandError) => err.message)),
    );
    expect(outcomes.filter((o) => !/^no runtime host answers/.test(o))).toEqual([]);
    // The 200 probes fall within one probe's window (a few at most where a tick splits them).
    expect(pings).toBeGreaterThan(0);
    expect(pings).toBeLessThanOrEqual(3);
  } finally {
    await quiet.close();
  }
});
