// The events stream is bounded in bytes as well as in age, oldest events dropped first,
// so that a busy host cannot fill the server's disk (a JetStream out of disk refuses the
// records too); one an earlier version left unbounded gets the bound at the next start.
import { connect } from '@nats-io/transport-node';
import { jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_EVENT_MAX_BYTES } from '../../bus/connection.js';
import { readEvents } from '../../bus/event-reader.js';
import { subjects } from '../../bus/subjects.js';
import { startTestServer, type TestServer } from '../helpers/nats.js';
import { connectClient, startTestHost, type TestHost } from '../helpers/runtime.js';

const servers: TestServer[] = [];
const hosts: TestHost[] = [];
afterAll(async () => {
  for (const h of hosts) await h.stop();
  for (const s of servers) await s.dispose();
});

async function server(maxFileStore?: number): Promise<TestServer> {
  const s = await startTestServer({ auth: false, maxFileStore });
  servers.push(s);
  return s;
}

describe('the events stream', () => {
  it('keeps at most VC_EVENTS_MAX_BYTES of events, the newest, while commands go on', async () => {
    const s = await server();
    const maxBytes = 64 * 1024;
    const host = await startTestHost(s.url, { host: 'small-stream', eventMaxBytes: maxBytes });
    hosts.push(host);
    const client = await connectClient(s.url);
    try {
      // About 1.5 KiB of events each: well past the bound.
      const ids = Array.from({ length: 80 }, (_, i) => `b${i}`);
      for (const id of ids) {
        await client.call('SandboxCreate', {}, { sandbox: { id, agent: 'noop' }, start: true });
        await client.call('SandboxDelete', { sid: id }, { force: true });
      }
      const info = await (await jetstreamManager(client.nc)).streams.info('VC_EVENTS');
      expect(info.config.max_bytes).toBe(maxBytes);
      expect(info.state.bytes).toBeLessThanOrEqual(maxBytes);
      const eventsOf = async (sandboxId: string) => {
        const out: string[] = [];
        for await (const e of readEvents(client.nc, { sandboxId })) out.push(e.event.type ?? "");
        return out;
      };
      expect(await eventsOf(ids[0]!)).toEqual([]);
      expect(await eventsOf(ids.at(-1)!)).toEqual(['create', 'start', 'stop', 'delete']);
    } finally {
      await client.close();
    }
  });

  it("fits the bound to a server whose JetStream store is smaller than the default, half of it left for the records", async () => {
    const store = 64 * 1024 * 1024;
    const s = await server(store);
    const host = await startTestHost(s.url, { host: 'small-store' });
    hosts.push(host);
    const client = await connectClient(s.url);
    try {
      const maxBytes = (await (await jetstreamManager(client.nc)).streams.info('VC_EVENTS')).config.max_bytes;
      expect(maxBytes).toBeGreaterThan(0);
      expect(maxBytes).toBeLessThanOrEqual(store / 2);
      // The host serves: records and events are written.
      expect((await client.call('SandboxCreate', {}, { sandbox: { id: 'fits', agent: 'noop' }, start: true })).sandbox).toMatchObject({ state: 'running' });
      await client.call('SandboxDelete', { sid: 'fits' }, { force: true });
    } finally {
      await client.close();
    }
  });

  it('bounds, at the next start, a stream an earlier version made without a bound', async () => {
    const s = await server();
    const nc = await connect({ servers: s.url });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'VC_EVENTS', subjects: [subjects.eventsAll()], retention: RetentionPolicy.Limits, storage: StorageType.File, max_age: 3600 * 1e9 });
      expect((await jsm.streams.info('VC_EVENTS')).config.max_bytes).toBe(-1);
      hosts.push(await startTestHost(s.url, { host: 'upgraded' }));
      const config = (await jsm.streams.info('VC_EVENTS')).config;
      // The bound is added; what else the stream had stays.
      expect([config.max_bytes, config.max_age]).toEqual([DEFAULT_EVENT_MAX_BYTES, 3600 * 1e9]);
    } finally {
      await nc.close();
    }
  });
});
