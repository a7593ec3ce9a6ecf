import { describe, expect, it } from 'vitest';
import { API_VERSION, Code, codeName, deprecatedCodes, MAX_CTL_FRAME } from '../../protos/hyperstart/codes.js';
import {
  CtlDecoder,
  decodeJson,
  decodeUint32,
  encodeCtl,
  encodeJson,
  encodeTty,
  encodeUint32,
  FrameError,
  ttyChunks,
  TtyDecoder,
} from '../../protos/hyperstart/frame.js';

const bytes = (...n: number[]) => Uint8Array.from(n);
const concat = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));

describe('hyperstart codes', () => {
  it('follow upstream hyperstart at API 4244, not the cc-agent dialect', () => {
    expect(API_VERSION).toBe(4244);
    expect(Code.PROCESSASYNCEVENT).toBe(23);
    expect(Code.SIGNALPROCESS).toBe(24);
    expect(Code.DELETEINTERFACE).toBe(25);
    // The upstream enum is sequential from 0.
    const upstream = Object.entries(Code).filter(([, v]) => v <= 25);
    expect(upstream.map(([, v]) => v)).toEqual([...Array(26).keys()]);
    expect(codeName(8)).toBe('READY');
    expect(codeName(99)).toBe('code 99');
    expect([...deprecatedCodes].sort((a, b) => a - b)).toEqual([2, 3, 5, 7, 13]);
  });
});

describe('ctl frames', () => {
  it('round-trip every code with an 8-byte big-endian header counting itself', () => {
    for (const code of Object.values(Code)) {
      const payload = encodeJson({ code });
      const frame = encodeCtl(code, payload);
      const v = new DataView(frame.buffer);
      expect(v.getUint32(0)).toBe(code);
      expect(v.getUint32(4)).toBe(8 + payload.byteLength);
      expect(new CtlDecoder().push(frame)).toEqual([{ code, payload }]);
    }
  });

  it('encodes READY as exactly [0,0,0,8, 0,0,0,8]', () => {
    expect(encodeCtl(Code.READY)).toEqual(bytes(0, 0, 0, 8, 0, 0, 0, 8));
  });

  it('reassembles a frame split at every byte boundary', () => {
    const frame = encodeCtl(Code.EXECCMD, encodeJson({ container: 'c', process: { args: ['true'] } }));
    for (let cut = 0; cut <= frame.byteLength; cut++) {
      const d = new CtlDecoder();
      const first = d.push(frame.subarray(0, cut));
      const second = d.push(frame.subarray(cut));
      expect([...first, ...second]).toHaveLength(1);
      expect(d.buffered).toBe(0);
    }
  });

  it('reassembles a frame fed one byte at a time', () => {
    const frame = encodeCtl(Code.PING);
    const d = new CtlDecoder();
    const out = [...frame].flatMap((b) => d.push(bytes(b)));
    expect(out).toEqual([{ code: Code.PING, payload: new Uint8Array() }]);
  });

  it('returns several frames from one read, keeping a partial tail', () => {
    const a = encodeCtl(Code.ACK);
    const b = encodeCtl(Code.NEXT, encodeUint32(42));
    const c = encodeCtl(Code.ERROR, encodeJson('no such container'));
    const d = new CtlDecoder();
    const all = concat(a, b, c);
    const got = d.push(all.subarray(0, all.byteLength - 3));
    expect(got.map((f) => f.code)).toEqual([Code.ACK, Code.NEXT]);
    expect(decodeUint32(got[1]!.payload)).toBe(42);
    const rest = d.push(all.subarray(all.byteLength - 3));
    expect(rest.map((f) => f.code)).toEqual([Code.ERROR]);
    expect(decodeJson(rest[0]!.payload)).toBe('no such container');
  });

  it('rejects an oversized frame from its header, before the payload arrives', () => {
    const d = new CtlDecoder();
    const header = new Uint8Array(8);
    new DataView(header.buffer).setUint32(4, MAX_CTL_FRAME + 1);
    expect(() => d.push(header)).toThrow(FrameError);
    expect(() => d.push(header)).toThrow(/exceeds the 10240-byte limit/);
    // A frame of exactly the limit is fine.
    const max = encodeCtl(Code.WRITEFILE, new Uint8Array(MAX_CTL_FRAME - 8));
    expect(new CtlDecoder().push(max)).toHaveLength(1);
    expect(() => encodeCtl(Code.WRITEFILE, new Uint8Array(MAX_CTL_FRAME - 7))).toThrow(/exceeds/);
  });

  it('honours a configured limit', () => {
    const frame = encodeCtl(Code.STARTPOD, new Uint8Array(100));
    expect(() => new CtlDecoder(64).push(frame)).toThrow(/exceeds the 64-byte limit/);
    expect(new CtlDecoder(200).push(frame)).toHaveLength(1);
  });

  it('rejects a length shorter than the header and stays failed', () => {
    const d = new CtlDecoder();
    const bad = bytes(0, 0, 0, 12, 0, 0, 0, 7);
    let error: unknown;
    try {
      d.push(bad);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(FrameError);
    expect((error as FrameError).kind).toBe('malformed');
    expect(() => d.push(encodeCtl(Code.PING))).toThrow(/shorter than its 8-byte header/);
  });

  it('holds a truncated frame without returning it', () => {
    const d = new CtlDecoder();
    const frame = encodeCtl(Code.STARTPOD, encodeJson({ hostname: 'h' }));
    expect(d.push(frame.subarray(0, 5))).toEqual([]);
    expect(d.push(frame.subarray(5, frame.byteLength - 1))).toEqual([]);
    expect(d.buffered).toBe(frame.byteLength - 1);
  });

  it('rejects a payload that is not JSON or not a 4-byte count', () => {
    expect(() => decodeJson(bytes(123))).toThrow(FrameError);
    expect(() => decodeUint32(bytes(1, 2))).toThrow(/4-byte/);
    expect(decodeUint32(encodeUint32(API_VERSION))).toBe(4244);
  });
});

describe('tty frames', () => {
  it('have a 12-byte header: u64 seq, u32 length counting itself', () => {
    const frame = encodeTty(0x1_0000_0002, bytes(104, 105));
    const v = new DataView(frame.buffer);
    expect(v.getBigUint64(0)).toBe(0x1_0000_0002n);
    expect(v.getUint32(8)).toBe(14);
    expect(new TtyDecoder().push(frame)).toEqual([{ seq: 0x1_0000_0002, payload: bytes(104, 105) }]);
  });

  it('carry EOF as a header-only frame', () => {
    const eof = encodeTty(7);
    expect(eof.byteLength).toBe(12);
    const [frame] = new TtyDecoder().push(eof);
    expect(frame).toEqual({ seq: 7, payload: new Uint8Array() });
  });

  it('interleave streams split across reads', () => {
    const all = concat(encodeTty(1, bytes(1, 2, 3)), encodeTty(2, bytes(4)), encodeTty(1), encodeTty(2));
    const d = new TtyDecoder();
    const out = [];
    for (let i = 0; i < all.byteLength; i += 5) out.push(...d.push(all.subarray(i, i + 5)));
    expect(out.map((f) => [f.seq, f.payload.byteLength])).toEqual([
      [1, 3],
      [2, 1],
      [1, 0],
      [2, 0],
    ]);
  });

  it('reject malformed and oversized frames', () => {
    expect(() => new TtyDecoder().push(bytes(0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 11))).toThrow(/shorter than its 12-byte header/);
    expect(() => new TtyDecoder(100).push(encodeTty(1, new Uint8Array(100)))).toThrow(/exceeds the 100-byte limit/);
    const huge = new Uint8Array(12);
    new DataView(huge.buffer).setBigUint64(0, 1n << 60n);
    new DataView(huge.buffer).setUint32(8, 12);
    expect(() => new TtyDecoder().push(huge)).toThrow(/above 2\^53/);
  });

  it('chunk large data into frames under the limit', () => {
    const data = new Uint8Array(250).map((_, i) => i);
    const frames = [...ttyChunks(3, data, 112)];
    expect(frames.map((f) => f.byteLength)).toEqual([112, 112, 62]);
    const got = new TtyDecoder(112).push(concat(...frames));
    expect(concat(...got.map((f) => f.payload))).toEqual(data);
    expect([...ttyChunks(3, new Uint8Array())]).toEqual([]);
  });
});
