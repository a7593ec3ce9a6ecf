// yamux sessions over a byte transport that splits every write into tiny pieces (as a
// serial port does): data arrives whole and in order, windows bound what is in flight,
// FIN half-closes, RST resets, pings come back, and a closed session ends its streams.
import { Duplex, PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { encodeHeader, Flag, HEADER_SIZE, INITIAL_WINDOW, Session, Type, type YamuxStream } from '../../protos/yamux/session.js';

/** One direction: delivers what is written in pieces of 1 to 7 bytes. */
function choppy(): PassThrough {
  const wire = new PassThrough();
  const out = new PassThrough();
  wire.on('data', (chunk: Buffer) => {
    for (let i = 0; i < chunk.length; ) {
      const n = 1 + ((i * 7 + chunk.length) % 7);
      out.write(chunk.subarray(i, i + n));
      i += n;
    }
  });
  wire.on('end', () => out.end());
  return Object.assign(wire, { out });
}

/** Two connected transports. */
function pair(): [Duplex, Duplex, { aToB: PassThrough & { out: PassThrough }; bToA: PassThrough & { out: PassThrough } }] {
  const aToB = choppy() as PassThrough & { out: PassThrough };
  const bToA = choppy() as PassThrough & { out: PassThrough };
  const a = Duplex.from({ writable: aToB, readable: bToA.out });
  const b = Duplex.from({ writable: bToA, readable: aToB.out });
  return [a, b, { aToB, bToA }];
}

const read = (s: YamuxStream) =>
  new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => resolve(Buffer.concat(parts)));
    s.on('error', reject);
  });

describe('yamux session', () => {
  it('carries many streams both ways over a transport that splits every frame', async () => {
    const [a, b] = pair();
    const server = new Session(b, {
      client: false,
      onStream: (s) => {
        // Echo, upper-cased, then half-close.
        const parts: Buffer[] = [];
        s.on('data', (d: Buffer) => parts.push(d));
        s.on('end', () => s.end(Buffer.concat(parts).toString().toUpperCase()));
      },
    });
    const client = new Session(a, { client: true });
    const streams = Array.from({ length: 5 }, () => client.open());
    expect(streams.map((s) => s.id)).toEqual([1, 3, 5, 7, 9]);
    const answers = streams.map(read);
    streams.forEach((s, i) => s.end(`stream ${i} `.repeat(100)));
    const got = await Promise.all(answers);
    got.forEach((g, i) => expect(g.toString()).toBe(`STREAM ${i} `.repeat(100)));
    const serverClosed = new Promise<void>((r) => server.onClose(() => r()));
    client.close();
    await serverClosed;
    expect(server.isClosed).toBe(true);
  });

  it('sends more than a window only as the reader grants it', async () => {
    const [a, b, wires] = pair();
    let accepted: YamuxStream | undefined;
    new Session(b, { client: false, onStream: (s) => (accepted = s) });
    const client = new Session(a, { client: true });
    const s = client.open();
    const payload = Buffer.alloc(INITIAL_WINDOW * 3, 7);
    let sent = 0;
    wires.aToB.on('data', (d: Buffer) => (sent += d.length));
    const writing = new Promise<void>((r) => s.end(payload, () => r()));
    await new Promise((r) => setTimeout(r, 100));
    // The peer has not read anything: no more than one window of data went out.
    expect(accepted).toBeDefined();
    expect(sent).toBeLessThan(INITIAL_WINDOW + 64 * HEADER_SIZE);
    const body = await read(accepted!);
    await writing;
    expect(body.equals(payload)).toBe(true);
  });

  it('resets a stream the peer destroys, and answers pings', async () => {
    const [a, b] = pair();
    new Session(b, { client: false, onStream: (s) => s.destroy() });
    const client = new Session(a, { client: true });
    const s = client.open();
    const err = await new Promise<Error>((resolve) => s.on('error', resolve));
    expect((err as NodeJS.ErrnoException).code).toBe('ECONNRESET');
    await client.ping(2000);
  });

  it('refuses streams when nobody accepts them, and ends every stream when the transport ends', async () => {
    const [a, b] = pair();
    const server = new Session(b, { client: false });
    const client = new Session(a, { client: true });
    const refused = client.open();
    await expect(new Promise((_, reject) => refused.on('error', reject))).rejects.toThrow(/reset/);
    const open = client.open();
    const failed = new Promise<Error>((r) => open.on('error', r));
    const ended = new Promise<void>((r) => open.on('close', () => r()));
    server.close();
    await ended;
    expect((await failed).message).toMatch(/session closed/);
    expect(client.isClosed).toBe(true);
  });

  it('closes the session on a frame of an unknown version', async () => {
    const [a, b] = pair();
    const server = new Session(b, { client: false });
    const bad = encodeHeader({ type: Type.Data, flags: Flag.SYN, streamId: 1, length: 0 });
    bad[0] = 9;
    const closed = new Promise<Error | undefined>((r) => server.onClose(r));
    a.write(bad);
    expect((await closed)?.message).toMatch(/version 9/);
  });

  it('sends the frames of one tick in one write of the transport, in order', async () => {
    const writes: Buffer[] = [];
    const transport = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        writes.push(chunk);
        cb();
      },
    });
    const client = new Session(transport, { client: true });
    const s1 = client.open();
    const s3 = client.open();
    s1.write('one');
    s3.write('three');
    await new Promise((r) => setImmediate(r));
    expect(writes).toHaveLength(1);
    // SYN 1, SYN 3, Data 1 'one', Data 3 'three'
    const frames: [number, number, string][] = [];
    for (let off = 0, b = writes[0]!; off < b.length; ) {
      const type = b.readUInt8(off + 1);
      const id = b.readUInt32BE(off + 4);
      const len = type === Type.Data ? b.readUInt32BE(off + 8) : 0;
      frames.push([type, id, b.subarray(off + HEADER_SIZE, off + HEADER_SIZE + len).toString()]);
      off += HEADER_SIZE + len;
    }
    expect(frames).toEqual([
      [Type.WindowUpdate, 1, ''],
      [Type.WindowUpdate, 3, ''],
      [Type.Data, 1, 'one'],
      [Type.Data, 3, 'three'],
    ]);
  });
});
