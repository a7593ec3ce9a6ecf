// A host cut off from the bus (its process lives on, its network to NATS is gone):
// the other host counts it lost after the configured time and says so on the bus,
// `list` and `status` show its sandbox as lost, commands for it answer at once with
// Unavailable naming the host, `sandbox forget` frees the id; when the host comes back
// it finds the record no longer its own, stops that guest and says what it did.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandError, VcClient } from '../../bus/client.js';
import { readEvents } from '../../bus/event-reader.js';
import type * as Bus from '../../bus/messages.gen.js';
import { subjects } from '../../bus/subjects.js';
import { startTestServer, type TestServer } from '../helpers/nats.js';
import { connectClient, startTestHost, type TestHost } from '../helpers/runtime.js';
import { startProxy, type TcpProxy } from '../helpers/proxy.js';
import { alive } from '../helpers/processes.js';
import { waitFor } from '../backends/helpers.js';

const LOST_AFTER_MS = 1500;
let server: TestServer;
let proxy: TcpProxy;
let alpha: TestHost;
let beta: TestHost;
let client: VcClient;
let viewer: VcClient;

beforeAll(async () => {
  server = await startTestServer();
  proxy = await startProxy(server.url);
  alpha = await startTestHost(server.url, { host: 'alpha', creds: server.auth!.host, hostLostAfterMs: LOST_AFTER_MS });
  beta = await startTestHost(proxy.url, { host: 'beta', creds: server.auth!.host, hostLostAfterMs: LOST_AFTER_MS });
  client = await connectClient(server.url, server.auth!.operator);
  viewer = await connectClient(server.url, server.auth!.viewer);
}, 60_000);

afterAll(async () => {
  await client?.close();
  await viewer?.close();
  await alpha?.stop();
  await proxy?.restore().catch(() => {});
  await beta?.stop();
  await proxy?.close();
  await server?.dispose();
});

async function hostEvents(host: string): Promise<Array<{ subject: string; event: Bus.Event }>> {
  const out = [];
  for await (const e of readEvents(client.nc)) if (e.subject.startsWith(subjects.hostEvent(host, ''))) out.push(e);
  return out;
}

const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (err: CommandError) => `${err.code}: ${err.message}`);

describe('a host cut off from the bus', () => {
  it('is counted lost, its sandbox can be forgotten, and it cleans up when it is back', async () => {
    await client.call('HostSandboxCreate', { host: 'beta' }, { sandbox: { id: 'b1', agent: 'kata', backend: 'namespace' }, start: true });
    await client.call('ContainerCreate', { sid: 'b1' }, { container: { id: 'c1', args: ['sleep', '300'] } });
    await client.call('ContainerStart', { sid: 'b1', cid: 'c1' });
    const guest = Number(readFileSync(join(beta.runRoot, 'b1', 'guest.pid'), 'utf8'));
    expect(alive(guest)).toBe(true);
    // A live host's sandbox cannot be forgotten.
    expect(await codeOf(client.call('SandboxForget', {}, { id: 'b1' }))).toMatch(/^FailedPrecondition: .*beta/);

    await proxy.cut();
    const lost = await waitFor(async () => {
      const s = (await client.call('SandboxList', {})).sandboxes!.find((x) => x.id === 'b1');
      return s?.state === 'lost' ? s : undefined;
    }, 'b1 to be listed as lost', 30_000);
    expect(lost).toMatchObject({ host: 'beta', state: 'lost' });
    expect(Date.parse(lost.lostSince!)).toBeGreaterThan(0);
    expect((await client.call('SandboxStatus', { sid: 'b1' })).sandbox).toMatchObject({ state: 'lost', host: 'beta', lostSince: lost.lostSince });

    // Told on the bus, once.
    const events = await waitFor(async () => {
      const e = await hostEvents('beta');
      return e.some((x) => x.event.type === 'lost') ? e : undefined;
    }, 'the lost event', 10_000);
    expect(events.filter((e) => e.event.type === 'lost')).toHaveLength(1);
    expect(events[0]!.subject).toBe(subjects.hostEvent('beta', 'lost'));

    // A command answers at once (a hang would end as DeadlineExceeded after 5 s).
    expect(await codeOf(client.call('ContainerStop', { sid: 'b1', cid: 'c1' }, undefined, { timeoutMs: 5_000 }))).toMatch(/^Unavailable: .*host beta is lost/);
    expect(await codeOf(client.call('HostSandboxCreate', { host: 'alpha' }, { sandbox: { id: 'b1' } }))).toMatch(/^AlreadyExists/);

    // Forgetting is an operator's: a viewer is refused by the server.
    expect(await codeOf(viewer.call('SandboxForget', {}, { id: 'b1' }))).toMatch(/^PermissionDenied/);
    expect(await client.call('SandboxForget', {}, { id: 'b1' })).toMatchObject({ id: 'b1' });
    expect(await codeOf(client.call('SandboxForget', {}, { id: 'b1' }))).toMatch(/^NotFound/);
    // The id is free: a new sandbox takes it on alpha.
    await client.call('HostSandboxCreate', { host: 'alpha' }, { sandbox: { id: 'b1' }, start: true });
    expect((await hostEvents('beta')).map((e) => e.event.type)).toContain('forget');

    // Back: beta finds b1's record another sandbox's, stops its guest and says so.
    await proxy.restore();
    await waitFor(() => (alive(guest) ? undefined : true), 'the forgotten guest to be stopped', 30_000);
    await waitFor(() => (beta.host.registry.has('b1') ? undefined : true), 'beta to let go of b1', 10_000);
    const reap = await waitFor(async () => (await hostEvents('beta')).find((e) => e.event.type === 'reap'), 'the reap event', 30_000);
    expect(reap.event).toMatchObject({ host: 'beta', sandboxId: 'b1' });
    expect(reap.event.message).toMatch(/replaced/);

    // The new b1 was not touched: alpha's, running, its events its own and gap-free.
    expect((await client.call('SandboxStatus', { sid: 'b1' })).sandbox).toMatchObject({ host: 'alpha', state: 'running' });
    const b1 = [];
    for await (const e of client.events({ sandboxId: 'b1' })) b1.push(e.event);
    const mine = b1.filter((e) => e.host === 'alpha');
    expect(mine.map((e) => e.seq)).toEqual(mine.map((_, i) => i + 1));
    // Beta is alive again: list shows its own state for what it holds, not lost.
    await waitFor(async () => ((await client.call('SandboxList', {})).sandboxes!.every((s) => s.state !== 'lost') ? true : undefined), 'no sandbox lost', 10_000);
    await client.call('SandboxDelete', { sid: 'b1' }, { force: true });
  });
});
