// JetStream writes through the one reply subscription (bus/jetstream-writer.ts), against
// a real nats-server: what the stream stores and every way a write fails read as the
// client library's own publish would, and the sandbox store keeps its revision rules.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection, NoRespondersError, TimeoutError, ClosedConnectionError } from '@nats-io/transport-node';
import { jetstreamManager, JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { JetStreamWriter } from '../../bus/jetstream-writer.js';
import { KvSandboxStore, StaleRevisionError, type SandboxRecord } from '../../bus/store.js';
import { ensureBusState } from '../../bus/connection.js';
import { VcError } from '../../bus/errors.js';
import { startTestServer, type TestServer } from '../helpers/nats.js';

let server: TestServer;
let nc: NatsConnection;
const enc = new TextEncoder();

beforeAll(async () => {
  server = await startTestServer({ auth: false });
  nc = await connect({ servers: server.url });
  await ensureBusState(nc);
  await (await jetstreamManager(nc)).streams.add({ name: 'W', subjects: ['w.>'], duplicate_window: 60e9 });
}, 30_000);

afterAll(async () => {
  await nc?.close();
  await server?.dispose();
});

const record = (id: string, state = 'ready'): SandboxRecord => ({ id, host: 'h1', status: { id, state } as SandboxRecord['status'], updatedAt: new Date().toISOString() });

describe('a JetStream write', () => {
  const writer = () => JetStreamWriter.for(nc);

  it('resolves with what the stream stored, and a repeated Nats-Msg-Id is stored once', async () => {
    const a = await writer().write('w.a', enc.encode('one'), { msgId: 'm1', timeoutMs: 5000 });
    const b = await writer().write('w.a', enc.encode('two'), { msgId: 'm2', timeoutMs: 5000 });
    const again = await writer().write('w.a', enc.encode('one'), { msgId: 'm1', timeoutMs: 5000 });
    expect(a).toEqual({ stream: 'W', seq: a.seq, duplicate: false });
    expect(b.seq).toBe(a.seq + 1);
    expect(again).toEqual({ stream: 'W', seq: a.seq, duplicate: true });
    const info = await (await jetstreamManager(nc)).streams.info('W');
    expect(info.state.messages).toBe(2);
  });

  it('many in flight each get their own acknowledgement', async () => {
    const acks = await Promise.all(Array.from({ length: 200 }, (_, i) => writer().write(`w.many.${i}`, enc.encode(String(i)), { timeoutMs: 5000 })));
    expect(new Set(acks.map((a) => a.seq)).size).toBe(200);
  });

  it('is refused with the stream’s error when the subject moved past the expected sequence', async () => {
    const first = await writer().write('w.cas', enc.encode('x'), { expectedLastSubjectSeq: 0, timeoutMs: 5000 });
    const err = await writer().write('w.cas', enc.encode('y'), { expectedLastSubjectSeq: 0, timeoutMs: 5000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JetStreamApiError);
    expect((err as JetStreamApiError).code).toBe(JetStreamApiCodes.StreamWrongLastSequence);
    const ok = await writer().write('w.cas', enc.encode('z'), { expectedLastSubjectSeq: first.seq, timeoutMs: 5000 });
    expect(ok.seq).toBeGreaterThan(first.seq);
  });

  it('to a subject no stream takes fails with no responders', async () => {
    await expect(writer().write('nostream.x', enc.encode('x'), { timeoutMs: 5000 })).rejects.toBeInstanceOf(NoRespondersError);
  });

  it('that nobody acknowledges times out', async () => {
    // A plain subscriber takes the message and never answers.
    const sub = nc.subscribe('silent.x');
    try {
      await expect(writer().write('silent.x', enc.encode('x'), { timeoutMs: 300 })).rejects.toBeInstanceOf(TimeoutError);
    } finally {
      sub.unsubscribe();
    }
  });

  it('pending when the connection closes fails with a closed connection, and later ones too', async () => {
    const own = await connect({ servers: server.url });
    const sub = own.subscribe('silent.y');
    const w = JetStreamWriter.for(own);
    const pending = w.write('silent.y', enc.encode('x'), { timeoutMs: 30_000 });
    await own.flush();
    sub.unsubscribe();
    await own.close();
    await expect(pending).rejects.toBeInstanceOf(ClosedConnectionError);
    await expect(w.write('w.a', enc.encode('x'), { timeoutMs: 1000 })).rejects.toBeInstanceOf(ClosedConnectionError);
  });
});

describe('the sandbox store', () => {
  it('claims an id once, and again once its record is removed', async () => {
    const store = await KvSandboxStore.open(nc);
    const rev = await store.claim(record('s1'));
    const taken = await store.claim(record('s1')).catch((e: unknown) => e);
    expect(taken).toBeInstanceOf(VcError);
    expect((taken as VcError).code).toBe('AlreadyExists');
    expect((taken as VcError).message).toContain('on host h1');
    await store.remove('s1', rev);
    expect(await store.get('s1')).toBeUndefined();
    const second = record('s1', 'creating');
    const again = await store.claim(second);
    expect(again).toBeGreaterThan(rev);
    expect(await store.entry('s1')).toEqual({ record: second, revision: again });
  });

  it('writes and removes only at the revision a writer names', async () => {
    const store = await KvSandboxStore.open(nc);
    const r1 = await store.claim(record('s2'));
    const r2 = await store.put(record('s2', 'running'), r1);
    await expect(store.put(record('s2', 'stopped'), r1)).rejects.toBeInstanceOf(StaleRevisionError);
    await expect(store.remove('s2', r1)).rejects.toBeInstanceOf(StaleRevisionError);
    expect((await store.get('s2'))?.status.state).toBe('running');
    // Without a revision the write is unconditional.
    const r3 = await store.put(record('s2', 'stopped'));
    expect(r3).toBeGreaterThan(r2);
    await store.remove('s2');
    expect(await store.list()).not.toContainEqual(expect.objectContaining({ id: 's2' }));
  });
});
