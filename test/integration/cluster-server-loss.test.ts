// A 3-node cluster without a single point of failure: the stream and both buckets get 3
// replicas (an existing one-replica stream is raised), and killing the server that
// leads the events stream with SIGKILL leaves commands working through the other two
// and loses nothing stored.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { CommandError, VcClient } from '../../bus/client.js';
import { connectBus, ensureBusState } from '../../bus/connection.js';
import type * as Bus from '../../bus/messages.gen.js';
import { kvStream, streams } from '../../bus/subjects.js';
import { killServer, startTestCluster, type TestCluster } from '../helpers/nats.js';
import { startTestHost, type TestHost } from '../helpers/runtime.js';
import { waitFor } from '../backends/helpers.js';

let cluster: TestCluster;
const hosts: TestHost[] = [];
let client: VcClient;

const ALL = [streams.events, kvStream(streams.sandboxBucket), kvStream(streams.hostBucket)];

beforeAll(async () => {
  cluster = await startTestCluster(3);
  // What an older version left: the stream with one replica.
  const nc = await connectBus({ servers: cluster.urls, creds: cluster.auth.host });
  await ensureBusState(nc, { replicas: 1 }, 60_000);
  await nc.close();
  // Each host lists every server, starting with a different one.
  for (const [i, name] of ['alpha', 'beta'].entries()) {
    const urls = [...cluster.urls.slice(i), ...cluster.urls.slice(0, i)];
    hosts.push(await startTestHost(urls, { host: name, creds: cluster.auth.host }));
  }
  client = await VcClient.connect({ servers: cluster.urls, creds: cluster.auth.operator, persistent: true, timeoutMs: 20_000 });
}, 120_000);

afterAll(async () => {
  await client?.close();
  for (const h of hosts) await h.stop();
  await cluster?.dispose();
});

async function eventsOf(sid: string): Promise<Bus.Event[]> {
  const out: Bus.Event[] = [];
  for await (const e of client.events({ sandboxId: sid })) out.push(e.event);
  return out;
}

async function lifecycle(sid: string, host: string): Promise<void> {
  const step = (what: string, p: Promise<unknown>) => p.catch((err: Error) => {
    throw new Error(`${what} ${sid} on ${host}: ${err.message}`);
  });
  await step('create', client.call('HostSandboxCreate', { host }, { sandbox: { id: sid }, start: true }));
  await step('container create', client.call('ContainerCreate', { sid }, { container: { id: 'c', args: ['true'] } }));
  await step('container start', client.call('ContainerStart', { sid, cid: 'c' }));
}

describe('a 3-node cluster', () => {
  it('gives the stream and buckets 3 replicas, raising the one left with 1', async () => {
    const jsm = await jetstreamManager(hosts[0]!.host.nc);
    for (const name of ALL) expect((await jsm.streams.info(name)).config.num_replicas, name).toBe(3);
  });

  it('keeps serving and loses nothing when the server leading the stream dies', async () => {
    for (let i = 0; i < 6; i++) await lifecycle(`pre${i}`, i % 2 ? 'beta' : 'alpha');
    const before = new Map<string, number>();
    for (let i = 0; i < 6; i++) before.set(`pre${i}`, (await eventsOf(`pre${i}`)).length);

    const jsm = await jetstreamManager(hosts[0]!.host.nc);
    // Every replica must have caught up before the fault, or the kill could lose what only the leader had.
    await waitFor(async () => {
      for (const name of ALL) {
        const c = (await jsm.streams.info(name)).cluster;
        if (!c?.leader || (c.replicas ?? []).some((r) => !r.current)) return undefined;
      }
      return true;
    }, 'replicas current', 30_000);
    const leader = (await jsm.streams.info(streams.events)).cluster!.leader!;
    const victim = cluster.nodes[Number(leader.replace(/^n/, ''))]!;
    await killServer(victim);

    // Commands work through the other two once new leaders are elected (meanwhile they
    // answer Unavailable: the bench measures that window).
    await waitFor(async () => {
      for (const name of ALL) {
        const leaderNow = await jsm.streams.info(name).then((i) => i.cluster?.leader, () => undefined);
        if (!leaderNow || leaderNow === leader) return undefined;
      }
      return true;
    }, 'new leaders', 60_000);
    await waitFor(() => client.call('SandboxList', {}).then(() => true, (err: CommandError) => {
      if (err.code !== 'Unavailable' && err.code !== 'DeadlineExceeded') throw err;
      return undefined;
    }), 'a command to work after the kill', 60_000);
    // And each host stores again (what was in flight at the kill is out of its outbox).
    await waitFor(() => (hosts.every((h) => h.host.health.up && h.host.publisher.outbox!.size === 0) ? true : undefined), 'the hosts to store again', 60_000);
    for (let i = 0; i < 6; i++) await lifecycle(`post${i}`, i % 2 ? 'beta' : 'alpha');

    const list = (await client.call('SandboxList', {})).sandboxes!.map((s) => s.id);
    for (let i = 0; i < 6; i++) expect(list).toEqual(expect.arrayContaining([`pre${i}`, `post${i}`]));
    for (const sid of list) {
      const events = await eventsOf(sid!);
      expect(events.map((e) => e.seq), sid).toEqual(events.map((_, i) => i + 1));
    }
    // What was stored before the kill is all still there, no more and no less.
    expect(before.size).toBeGreaterThan(0);
    for (const [sid, count] of before) expect((await eventsOf(sid)).length, sid).toBe(count);
    const newLeader = (await jsm.streams.info(streams.events)).cluster!.leader;
    expect(newLeader).not.toBe(leader);
  }, 120_000); // a leader election on a loaded 2-core machine: the waits above allow a minute each
});
