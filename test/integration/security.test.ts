// Nobody unauthorised on the bus: the server refuses clients without credentials it
// trusts, its subject permissions enforce the roles (every state-changing command is
// refused to a viewer, with an error that says so), and only hosts can write events
// and state, whatever trick a client tries.
import { describe, expect, it } from 'vitest';
import { createInbox, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connectBus, identityOf, jetStreamOptions, permissionError } from '../../bus/connection.js';
import { CommandError, type VcClient } from '../../bus/client.js';
import { subjectOf as commandSubjectOf } from '../../bus/commands.js';
import { createAuthority, createCreds, credsIdentity } from '../../bus/credentials.js';
import { writePrivateFile } from '../../bus/auth-files.js';
import { commands, type CommandInfo } from '../../bus/roles.js';
import { CLIENT_JS_API, commandSubject, JS_API, natsSubjects, srvSubjects, streams, subjects } from '../../bus/subjects.js';
import { decodeTrusted, encode } from '../../bus/codec.js';
import { readEvents } from '../../bus/event-reader.js';
import { EventPublisher } from '../../bus/events.js';
import type * as Bus from '../../bus/messages.gen.js';
import { connectClient, useRuntime } from '../helpers/runtime.js';

const rt = useRuntime({ inspect: true });
const HOST = 'test-host';
const auth = () => rt.server.auth!;

/** A request's reply, or the refusal the server's permissions made of it. */
async function attempt(client: VcClient, subject: string, body: unknown = {}): Promise<{ reply?: Record<string, unknown>; denied?: string }> {
  try {
    return { reply: await client.requestSubject(subject, encode(body), { timeoutMs: 10_000 }) };
  } catch (err) {
    if (!(err instanceof CommandError && err.code === 'PermissionDenied')) throw err;
    return { denied: err.message };
  }
}

/** A body each command accepts (or refuses with an error code, never a permission). */
function bodyFor(c: CommandInfo): unknown {
  switch (c.name) {
    case 'sandbox create':
    case 'sandbox create --host':
      return { sandbox: { id: 'other' } };
    case 'container create':
      return { container: { id: 'c9', args: ['true'] } };
    case 'container kill':
      return { signal: 15 };
    case 'container exec':
      return { args: ['true'] };
    case 'container ps':
      return { format: 'json' };
    case 'sandbox online-cpu-mem':
      return { cpus: 1 };
    case 'creds create':
      return { role: 'viewer', name: 'someone', publicKey: 'UX' };
    default:
      return {};
  }
}

/** Container `done` has exited (for wait), `run` runs (for everything else). */
const subjectOf = (c: CommandInfo, sid = 'sec1', cid = c.name === 'container wait' ? 'done' : 'run') =>
  commandSubject(c.subject, { sid, cid, host: HOST });

/** Events and stream state as the host sees them. */
async function streamState(nc: NatsConnection) {
  const jsm = await jetstreamManager(nc);
  return (await jsm.streams.info(streams.events)).state;
}

describe('credentials', () => {
  it('refuses a client without credentials at connect', async () => {
    await expect(connectBus({ servers: rt.server.url })).rejects.toThrow(/Authorization Violation/);
  });

  it('refuses credentials the server does not trust, and a JWT presented with another key', async () => {
    const foreign = await createAuthority();
    const file = `${rt.server.dir}/foreign.creds`;
    writePrivateFile(file, await createCreds(foreign, 'operator', 'mallory'));
    await expect(connectBus({ servers: rt.server.url, creds: file })).rejects.toThrow(/Authorization Violation/);

    // The operator's JWT with a seed of a different key: the server checks the signature of its nonce.
    const real = (await import('node:fs')).readFileSync(auth().operator, 'utf8');
    const other = await createCreds(auth().authority, 'operator', 'other');
    const seedOf = (creds: string) => /-----BEGIN USER NKEY SEED-----\s*(\S+)/.exec(creds)![1]!;
    const mixed = real.replace(seedOf(real), seedOf(other));
    expect(mixed).not.toBe(real);
    const mixedFile = `${rt.server.dir}/mixed.creds`;
    writePrivateFile(mixedFile, mixed);
    await expect(connectBus({ servers: rt.server.url, creds: mixedFile })).rejects.toThrow(/Authorization Violation/);
  });

  it('names each role in its credentials', () => {
    expect(identityOf(auth().host)).toMatchObject({ role: 'host', name: 'host' });
    expect(identityOf(auth().operator)).toMatchObject({ role: 'operator', name: 'operator' });
    expect(identityOf(auth().viewer)).toMatchObject({ role: 'viewer', name: 'viewer' });
  });
});

describe('roles', () => {
  it('an operator drives a full lifecycle that the host serves, and may send every command', async () => {
    const operator = rt.client;
    await rt.ok('SandboxCreate', {}, { sandbox: { id: 'sec1', agent: 'noop' }, start: true });
    for (const cid of ['done', 'run']) {
      await rt.ok('ContainerCreate', { sid: 'sec1' }, { container: { id: cid, args: ['sleep', '1'] } });
      await rt.ok('ContainerStart', { sid: 'sec1', cid });
    }
    await rt.ok('ContainerExec', { sid: 'sec1', cid: 'done' }, { execId: 'e1', args: ['ls'] });
    await rt.ok('ContainerKill', { sid: 'sec1', cid: 'run' }, { signal: 10 });
    await rt.ok('ContainerStop', { sid: 'sec1', cid: 'done' });
    const status = await rt.ok('SandboxStatus', { sid: 'sec1' });
    expect(status.sandbox).toMatchObject({ id: 'sec1', state: 'running', host: HOST });
    const events = await rt.eventsOf('sec1');
    expect(events.map((e) => [e.containerId ?? '', e.type])).toEqual(expect.arrayContaining([['', 'create'], ['', 'start'], ['done', 'exit']]));
    expect(events.every((e) => e.host === HOST)).toBe(true);

    // Every command reaches a host (on a sandbox that does not exist, or with a body it
    // refuses, so nothing changes).
    for (const c of commands) {
      const body = c.name.startsWith('sandbox create') ? { sandbox: { id: 'bad id' } } : bodyFor(c);
      const r = await attempt(operator, subjectOf(c, 'nosuch', 'nosuch'), body);
      expect(r.denied, c.name).toBeUndefined();
      expect(typeof r.reply?.ok, c.name).toBe('boolean');
    }
    const list = await rt.ok('SandboxList', {});
    expect(list.sandboxes!.map((s) => s.id)).toEqual(['sec1']);
  });

  it('an operator mints credentials for a new viewer, who connects as a viewer', async () => {
    const file = `${rt.server.dir}/minted.creds`;
    const creds = await rt.client.createCreds('viewer', 'alice');
    writePrivateFile(file, creds);
    expect(credsIdentity(creds)).toMatchObject({ role: 'viewer', name: 'alice' });
    const alice = await connectClient(rt.server.url, file);
    try {
      expect(await alice.request('SandboxStatus', { sid: 'sec1' })).toMatchObject({ ok: true });
      const r = await attempt(alice, commandSubjectOf('SandboxStop', { sid: 'sec1' }));
      expect(r.denied).toBe('permission denied: role viewer may not sandbox stop sec1 (publish vc.v1.sandbox.sec1.stop)');
    } finally {
      await alice.close();
    }
    const bad = await rt.client.requestSubject(subjects.credsCreate(), encode({ role: 'root', name: 'x', publicKey: 'UX' }));
    expect(bad.error).toMatchObject({ code: 'InvalidArgument', message: expect.stringMatching(/role must be one of host, operator, viewer/) });
  });

  it('a viewer reads everything a viewer may', async () => {
    const viewer = await connectClient(rt.server.url, auth().viewer);
    try {
      // The host answers each read (the noop agent has no stats: the host says so).
      const answer: Record<string, object> = { 'container stats': { ok: false, error: { code: 'Unimplemented' } } };
      for (const c of commands.filter((x) => !x.changesState)) {
        const r = await attempt(viewer, subjectOf(c), bodyFor(c));
        expect(r.denied, c.name).toBeUndefined();
        expect(r.reply, c.name).toMatchObject(answer[c.name] ?? { ok: true });
      }
      // Events: replay, and follow.
      const replayed = [];
      for await (const e of readEvents(viewer.nc, { sandboxId: 'sec1' })) replayed.push(e.event);
      expect(replayed).toEqual(await rt.eventsOf('sec1'));
      const followed: Bus.Event[] = [];
      const following = (async () => {
        for await (const e of readEvents(viewer.nc, { sandboxId: 'sec1', follow: true })) {
          followed.push(e.event);
          if (e.event.type === 'exec-added' && e.event.execId === 'e2') break;
        }
      })();
      const inspections: Bus.Inspection[] = [];
      const insp = viewer.nc.subscribe(subjects.inspectSandbox('sec1'), { callback: (_e, m) => void inspections.push(decodeTrusted(m.data)) });
      await viewer.nc.flush();
      await rt.ok('ContainerExec', { sid: 'sec1', cid: 'run' }, { execId: 'e2', args: ['ls'] });
      await following;
      expect(followed.at(-1)).toMatchObject({ type: 'exec-added', execId: 'e2' });
      expect(followed.slice(0, replayed.length)).toEqual(replayed);
      await rt.client.nc.flush();
      await viewer.nc.flush();
      insp.unsubscribe();
      expect(inspections.some((i) => i.actorId === 'e2')).toBe(true);

      // State in KV, by key.
      const kv = await new Kvm(jetstream(viewer.nc, jetStreamOptions(viewer.nc))).open(streams.sandboxBucket, { allow_direct: true });
      const record = decodeTrusted<{ host: string; id: string }>((await kv.get('sec1'))!.value);
      expect(record).toMatchObject({ id: 'sec1', host: HOST });

      // Service discovery.
      const inbox = createInbox();
      const answers: unknown[] = [];
      const sub = viewer.nc.subscribe(inbox, { max: 1, callback: (_e, m) => void answers.push(decodeTrusted(m.data)) });
      viewer.nc.publish(srvSubjects('INFO', '')[0]!, new Uint8Array(), { reply: inbox });
      await sub.closed;
      expect(answers[0]).toMatchObject({ name: 'virtactors', metadata: { host: HOST } });
    } finally {
      await viewer.close();
    }
  });

  it('refuses a viewer every command that changes state, each with a clear error, and nothing changes', async () => {
    const viewer = await connectClient(rt.server.url, auth().viewer);
    const before = await rt.ok('SandboxStatus', { sid: 'sec1' });
    const seqBefore = (await streamState(rt.host.host.nc)).last_seq;
    const changing = commands.filter((c) => c.changesState);
    expect(changing.map((c) => c.name)).toEqual(expect.arrayContaining(['sandbox create', 'sandbox delete', 'container exec', 'container kill', 'creds create']));
    try {
      for (const c of changing) {
        const r = await attempt(viewer, subjectOf(c), bodyFor(c));
        expect(r.reply, c.name).toBeUndefined();
        expect(r.denied, c.name).toMatch(new RegExp(`^permission denied: role viewer may not ${c.name.replace(/[-]/g, '\\-')}`));
        expect(r.denied, c.name).toContain(subjectOf(c));
        // Nor addressed to one host, as a client's second try is.
        if (!subjectOf(c).startsWith(subjects.publicCommands().slice(0, -1))) continue;
        const via = await attempt(viewer, subjects.hostVia(HOST, subjectOf(c)), bodyFor(c));
        expect(via.reply, `${c.name} via ${HOST}`).toBeUndefined();
        expect(via.denied, `${c.name} via ${HOST}`).toMatch(/^permission denied/);
      }
    } finally {
      await viewer.close();
    }
    const after = await rt.ok('SandboxStatus', { sid: 'sec1' });
    expect(after.sandbox).toEqual(before.sandbox);
    expect((await streamState(rt.host.host.nc)).last_seq).toBe(seqBefore);
  });
});

describe('only hosts write events and state', () => {
  for (const role of ['viewer', 'operator'] as const) {
    it(`no forged event or record reaches VC_EVENTS or the buckets with ${role} credentials`, async () => {
      const creds = auth()[role];
      const client = await connectClient(rt.server.url, creds);
      const nc = client.nc;
      const forged = subjects.sandboxEvent('sec1', 'delete');
      const fake = encode({ type: 'delete', sandboxId: 'sec1', seq: 999, host: HOST, state: 'deleted', time: new Date().toISOString() });
      const before = await streamState(rt.host.host.nc);
      const record = await rt.host.host.registry.get('sec1').status();
      const refused: string[] = [];
      try {
        // 1. A plain publish on an event subject.
        nc.publish(forged, fake);
        // 2. A JetStream publish (waits for the stream's ack).
        await jetstream(nc, jetStreamOptions(nc)).publish(forged, fake, { timeout: 3000 }).then(
          () => refused.push('unexpected ack'),
          (err) => refused.push(permissionError(err, identityOf(creds))?.message ?? (err as Error).message),
        );
        // 3. A KV put of a sandbox record.
        const kv = await new Kvm(jetstream(nc, jetStreamOptions(nc))).open(streams.sandboxBucket, { allow_direct: true });
        await kv.put('sec1', encode({ id: 'sec1', host: 'mallory' })).then(
          () => refused.push('unexpected kv ack'),
          (err) => refused.push(permissionError(err, identityOf(creds))?.message ?? (err as Error).message),
        );
        // 4. A consumer (a push consumer would deliver stored messages to a subject of the caller's choosing).
        for (const api of [JS_API, CLIENT_JS_API]) {
          await nc.request(natsSubjects.jsConsumerCreate(api, streams.events), encode({ stream_name: streams.events, config: { deliver_subject: forged } }), { timeout: 3000 }).then(
            (m) => refused.push(`consumer create answered: ${new TextDecoder().decode(m.data)}`),
            (err) => refused.push(permissionError(err, identityOf(creds))?.message ?? (err as Error).message),
          );
        }
        // 5. A host's reply, or the JetStream API's, aimed at an event subject.
        nc.publish(commandSubjectOf('SandboxStatus', { sid: 'sec1' }), encode({}), { reply: forged });
        nc.publish(natsSubjects.jsStreamInfo(CLIENT_JS_API, streams.events), encode({}), { reply: forged });
        nc.publish(natsSubjects.jsStreamInfo(CLIENT_JS_API, streams.events), encode({}), { reply: natsSubjects.kvKey(streams.sandboxBucket, 'sec1') });
        await nc.flush();
      } finally {
        await client.close();
      }
      // Whatever the tricks made the host or the server publish came before this: the
      // host answers one more request, then stores an event of its own.
      await rt.ok('SandboxStatus', { sid: 'sec1' });
      await new EventPublisher(rt.host.host.nc).publish({ type: 'marker', sandboxId: 'marker', seq: 1, host: HOST }, `marker.${role}`);
      const after = await streamState(rt.host.host.nc);
      expect(after.last_seq).toBe(before.last_seq + 1);
      const jsm = await jetstreamManager(rt.host.host.nc);
      expect((await jsm.streams.getMessage(streams.events, { seq: after.last_seq }))!.subject).toBe(subjects.sandboxEvent('marker', 'marker'));
      expect((await rt.host.host.registry.get('sec1').status()).host).toBe(record.host);
      const stored = await new Kvm(rt.host.host.nc).open(streams.sandboxBucket);
      expect(decodeTrusted<{ host: string }>((await stored.get('sec1'))!.value).host).toBe(HOST);

      expect(refused).toHaveLength(4);
      for (const r of refused) expect(r).toMatch(new RegExp(`^permission denied: role ${role} may not publish `));
    });
  }
});
