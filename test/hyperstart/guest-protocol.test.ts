// The real guest spoken to with raw frames: what any hyperstart host may rely on.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code } from '../../protos/hyperstart/codes.js';
import { CtlDecoder, decodeJson, decodeText, decodeUint32, encodeCtl, encodeJson, encodeTty, TtyDecoder, type CtlFrame, type TtyFrame } from '../../protos/hyperstart/frame.js';
import { Raw, setupDriver, startGuest, type DriverSetup, type GuestProcess } from './harness.js';

const reply = (f: CtlFrame) => f.code === Code.ACK || f.code === Code.ERROR;

let setup: DriverSetup;
let guest: GuestProcess;
let ctl: Raw<CtlFrame>;

beforeEach(async () => {
  setup = await setupDriver();
  guest = await startGuest(setup.agent);
  ctl = await Raw.open(`${setup.dir}/hyper.sock`, new CtlDecoder());
});

afterEach(async () => {
  ctl.socket.destroy();
  await guest.kill();
  await setup.cleanup();
});

describe('hyperstart guest wire behaviour', () => {
  it('sends READY first, then answers VERSION with 4244', async () => {
    const ready = await ctl.next(() => true);
    expect(ready).toEqual({ code: Code.READY, payload: new Uint8Array() });
    ctl.socket.write(encodeCtl(Code.VERSION));
    const ack = await ctl.next(reply);
    expect(ack.code).toBe(Code.ACK);
    expect(decodeUint32(ack.payload)).toBe(4244);
  });

  it('credits every read with NEXT carrying the bytes consumed', async () => {
    await ctl.next((f) => f.code === Code.READY);
    const frame = encodeCtl(Code.PING);
    ctl.socket.write(frame);
    const next = await ctl.next((f) => f.code === Code.NEXT);
    expect(decodeUint32(next.payload)).toBe(frame.byteLength);
  });

  it('answers each command exactly once, in order; unknown and deprecated codes get ERROR', async () => {
    await ctl.next((f) => f.code === Code.READY);
    const codes = [Code.PING, 2, 3, 5, 7, 13, 99, Code.READFILE, Code.PING, Code.KILLCONTAINER];
    const frames = codes.map((c) => encodeCtl(c, c === Code.KILLCONTAINER ? encodeJson({ container: 'nope', signal: 9 }) : undefined));
    ctl.socket.write(Buffer.concat(frames));
    const replies: CtlFrame[] = [];
    for (const _ of codes) replies.push(await ctl.next(reply));
    expect(replies.map((f) => f.code)).toEqual([9, 10, 10, 10, 10, 10, 10, 10, 9, 10]);
    expect(decodeText(replies[1]!.payload)).toMatch(/GETPOD_DEPRECATED is deprecated/);
    expect(decodeText(replies[6]!.payload)).toMatch(/unknown command code 99/);
    expect(decodeText(replies[9]!.payload)).toBe('FailedPrecondition: the pod is not started: send STARTPOD first');
    await new Promise((r) => setTimeout(r, 50));
    expect(ctl.frames.filter(reply)).toEqual([]);
  });

  it('closes a connection that sends a bad frame, and greets the next host with READY', async () => {
    await ctl.next((f) => f.code === Code.READY);
    ctl.socket.write(Buffer.from([0, 0, 0, 12, 0, 0, 0xff, 0xff]));
    await expect(ctl.next(reply)).rejects.toThrow(/closed/);
    ctl = await Raw.open(`${setup.dir}/hyper.sock`, new CtlDecoder());
    expect((await ctl.next(() => true)).code).toBe(Code.READY);
    ctl.socket.write(encodeCtl(Code.PING));
    expect((await ctl.next(reply)).code).toBe(Code.ACK);
  });

  it('streams stdin and stdout on tty frames, EOF both ways, then PROCESSASYNCEVENT', async () => {
    const tty = await Raw.open<TtyFrame>(`${setup.dir}/tty.sock`, new TtyDecoder());
    await ctl.next((f) => f.code === Code.READY);
    ctl.socket.write(encodeCtl(Code.STARTPOD, encodeJson({ hostname: 'h' })));
    expect((await ctl.next(reply)).code).toBe(Code.ACK);
    const container = { id: 'c', rootfs: '', process: { id: 'c', args: ['cat'], stdio: 5, stderr: 6 } };
    ctl.socket.write(encodeCtl(Code.NEWCONTAINER, encodeJson(container)));
    const ack = await ctl.next(reply);
    expect(ack.code).toBe(Code.ACK);
    expect(decodeJson<{ pid: number }>(ack.payload).pid).toBeGreaterThan(0);

    tty.socket.write(encodeTty(5, Buffer.from('ping\n')));
    expect(await tty.next((f) => f.seq === 5 && f.payload.byteLength > 0)).toEqual({ seq: 5, payload: new Uint8Array(Buffer.from('ping\n')) });
    // Data for a stream nobody owns is answered with its EOF.
    tty.socket.write(encodeTty(77, Buffer.from('?')));
    expect(await tty.next((f) => f.seq === 77)).toEqual({ seq: 77, payload: new Uint8Array() });

    tty.socket.write(encodeTty(5));
    await tty.next((f) => f.seq === 5 && f.payload.byteLength === 0);
    await tty.next((f) => f.seq === 6 && f.payload.byteLength === 0);
    const event = await ctl.next((f) => f.code === Code.PROCESSASYNCEVENT);
    expect(decodeJson(event.payload)).toEqual({ container: 'c', process: 'c', event: 'finished', status: 0 });

    // REMOVECONTAINER after the exit; a second one finds nothing.
    ctl.socket.write(encodeCtl(Code.REMOVECONTAINER, encodeJson({ container: 'c' })));
    ctl.socket.write(encodeCtl(Code.REMOVECONTAINER, encodeJson({ container: 'c' })));
    expect((await ctl.next(reply)).code).toBe(Code.ACK);
    expect(decodeText((await ctl.next(reply)).payload)).toBe('NotFound: container c does not exist');
    tty.socket.destroy();
  });
});

describe('hyperstart driver stdin', () => {
  // Against our guest's own mode and its stock mode (a stock hyperstart takes stdin alike).
  for (const flags of [[], ['--stock']]) {
    it(`writes to a process and closes its input (${flags.length ? 'stock' : 'own'} guest)`, async () => {
      ctl.socket.destroy(); // make room for the driver's own connection
      if (flags.length) {
        await guest.kill();
        guest = await startGuest(setup.agent, flags);
      }
      await setup.agent.startSandbox({});
      await setup.agent.createContainer({ id: 'c1', args: ['cat'], env: [], cwd: '', user: '', terminal: false, rootfs: '', annotations: {} });
      await setup.agent.startContainer('c1');
      await setup.agent.writeProcessStdin('c1', 'c1', Buffer.from('through stdin'));
      await setup.agent.closeProcessStdin('c1', 'c1');
      expect((await setup.exited('c1', 'c1')).exitStatus).toBe(0);
      expect(setup.text('c1', 'c1')).toBe('through stdin');
    });
  }
});
