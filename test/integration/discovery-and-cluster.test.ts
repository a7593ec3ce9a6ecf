// Service discovery ($SRV, ADR-32) and several runtime hosts sharing a 3-node cluster
// with authentication on (clients and routes): ids are unique across hosts, and a
// command reaches the owner of its sandbox through whichever host's queue subscription
// received it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeTrusted } from '../../bus/codec.js';
import { commandFilter, srvSubjects } from '../../bus/subjects.js';
import { commands } from '../../bus/commands.js';
import type { VcClient } from '../../bus/client.js';
import { readEvents } from '../../bus/event-reader.js';
import { createInbox } from '@nats-io/transport-node';
import { startTestCluster, type TestCluster } from '../helpers/nats.js';
import { connectClient, startTestHost, type TestHost } from '../helpers/runtime.js';

let cluster: TestCluster;
let hosts: TestHost[] = [];
let client: VcClient;

beforeAll(async () => {
  cluster = await startTestCluster(3);
  // Each host talks to a different node.
  hosts = [
    await startTestHost(cluster.urls[0]!, { host: 'alpha', replicas: 3, creds: cluster.auth.host }),
    await startTestHost(cluster.urls[1]!, { host: 'beta', replicas: 3, creds: cluster.auth.host }),
  ];
  client = await connectClient(cluster.urls[2]!, cluster.auth.operator);
}, 120_000);

afterAll(async () => {
  await client?.close();
  for (const h of hosts) await h.stop();
  await cluster?.dispose();
});

async function gather(subject: string): Promise<Array<Record<string, unknown>>> {
  const inbox = createInbox();
  const sub = client.nc.subscribe(inbox);
  client.nc.publish(subject, new Uint8Array(), { reply: inbox });
  const out: Array<Record<string, unknown>> = [];
  const timer = setTimeout(() => sub.unsubscribe(), 1000);
  for await (const m of sub) out.push(decodeTrusted(m.data));
  clearTimeout(timer);
  return out;
}

describe('service discovery', () => {
  it('answers PING, INFO and STATS from every host', async () => {
    const pings = await gather(srvSubjects('PING', '')[1]!);
    const hostOf = (p: Record<string, unknown>) => (p.metadata as { host: string }).host;
    expect(pings.map(hostOf).sort()).toEqual(['alpha', 'beta']);
    expect(pings[0]).toMatchObject({ type: 'io.nats.micro.v1.ping_response', name: 'virtactors' });
    // Instance ids are unique per runtime process; the host name is metadata.
    expect(new Set(pings.map((p) => p.id)).size).toBe(2);

    const betaId = pings.find((p) => hostOf(p) === 'beta')!.id as string;
    const info = await gather(srvSubjects('INFO', betaId)[2]!);
    expect(info).toHaveLength(1);
    expect((info[0]!.endpoints as Array<{ subject: string }>).map((e) => e.subject)).toContain(commandFilter(commands.SandboxStatus.subject));

    await client.request('SandboxStatus', { sid: 'nosuch' });
    const stats = await gather(srvSubjects('STATS', '')[0]!);
    const total = stats.flatMap((s) => s.endpoints as Array<{ name: string; num_requests: number; num_errors: number }>)
      .filter((e) => e.name === 'sandbox-status')
      .reduce((a, e) => ({ req: a.req + e.num_requests, err: a.err + e.num_errors }), { req: 0, err: 0 });
    expect(total.req).toBeGreaterThanOrEqual(1);
    expect(total.err).toBeGreaterThanOrEqual(1);
  });
});

describe('several hosts on one cluster', () => {
  it('routes every command to the owner host and keeps ids unique', async () => {
    const a = await client.request('HostSandboxCreate', { host: 'alpha' }, { sandbox: { id: 'on-alpha' } });
    expect(a).toMatchObject({ ok: true, sandbox: { host: 'alpha' } });
    const b = await client.request('HostSandboxCreate', { host: 'beta' }, { sandbox: { id: 'on-beta' } });
    expect(b).toMatchObject({ ok: true, sandbox: { host: 'beta' } });

    const dup = await client.request('HostSandboxCreate', { host: 'beta' }, { sandbox: { id: 'on-alpha' } });
    expect(dup.error).toMatchObject({ code: 'AlreadyExists', message: expect.stringMatching(/on host alpha/) });

    // Many commands: the queue group spreads them over both hosts; each must reach its owner.
    for (let i = 0; i < 10; i++) {
      for (const [id, owner] of [['on-alpha', 'alpha'], ['on-beta', 'beta']] as const) {
        const r = await client.request('SandboxStatus', { sid: id });
        expect(r).toMatchObject({ ok: true, sandbox: { id, host: owner } });
      }
    }
    for (const id of ['on-alpha', 'on-beta']) {
      expect((await client.request('SandboxStart', { sid: id })).ok).toBe(true);
      expect((await client.request('ContainerCreate', { sid: id }, { container: { id: 'c', args: ['x'] } })).ok).toBe(true);
    }
    const list = await client.request('SandboxList', {});
    expect((list.sandboxes as Array<{ id: string; host: string; state: string }>).map((s) => [s.id, s.host, s.state])).toEqual([
      ['on-alpha', 'alpha', 'running'],
      ['on-beta', 'beta', 'running'],
    ]);
    const missing = await client.request('SandboxStop', { sid: 'nowhere' });
    expect(missing.error?.code).toBe('NotFound');

    for (const id of ['on-alpha', 'on-beta']) expect((await client.request('SandboxDelete', { sid: id }, { force: true })).ok).toBe(true);
    const events = [];
    for await (const e of readEvents(client.nc, { sandboxId: 'on-beta' })) events.push(e.event);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.every((e) => e.host === 'beta')).toBe(true);
  });
});
