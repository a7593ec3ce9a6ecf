// Our hyperstart guest in its stock mode (--stock) reproduces what upstream hyperstart
// (API 4244) was observed to do (reference §10), spoken to with raw frames: each fact
// below is what a host driving a stock hyperstart must cope with.
import { mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../protos/hyperstart/codes.js';
import { CtlDecoder, decodeJson, encodeCtl, encodeJson, TtyDecoder, type CtlFrame, type TtyFrame } from '../../protos/hyperstart/frame.js';
import { buildBusyboxRootfs } from '../kata/helpers.js';
import { Raw, setupDriver, startGuest, type DriverSetup, type GuestProcess } from './harness.js';

const reply = (f: CtlFrame) => f.code === Code.ACK || f.code === Code.ERROR;
const event = (f: CtlFrame) => f.code === Code.PROCESSASYNCEVENT;

let setup: DriverSetup;
let guest: GuestProcess;
let ctl: Raw<CtlFrame>;
let tty: Raw<TtyFrame>;
let seq = 100;

async function attach(opts: Parameters<typeof startGuest>[2] = {}): Promise<void> {
  setup = await setupDriver();
  guest = await startGuest(setup.agent, ['--stock'], opts);
  tty = await Raw.open(`${setup.dir}/tty.sock`, new TtyDecoder());
  ctl = await Raw.open(`${setup.dir}/hyper.sock`, new CtlDecoder());
  await ctl.next((f) => f.code === Code.READY);
}

async function detach(): Promise<void> {
  ctl?.socket.destroy();
  tty?.socket.destroy();
  await guest?.kill();
  await setup?.cleanup();
}

async function call(code: number, body?: unknown): Promise<CtlFrame> {
  ctl.socket.write(encodeCtl(code, body === undefined ? undefined : encodeJson(body)));
  return ctl.next(reply);
}

/**
 * NEWCONTAINER with fresh stream seqs; resolves with the ACK and the seqs. A rootfs is
 * staged as a host stages it: at <shared dir>/<id>/rootfs, sent as image <id>, rootfs
 * "rootfs" (the guest opens <shared root>/<image>/<rootfs>).
 */
async function newContainer(id: string, args: string[], rootfs = ''): Promise<{ ack: CtlFrame; stdio: number; stderr: number }> {
  const stdio = ++seq;
  const stderr = ++seq;
  let where = {};
  if (rootfs) {
    mkdirSync(`${setup.dir}/shared/${id}`, { recursive: true });
    symlinkSync(rootfs, `${setup.dir}/shared/${id}/rootfs`);
    where = { image: id, rootfs: 'rootfs' };
  }
  const ack = await call(Code.NEWCONTAINER, { id, ...where, process: { id, args, stdio, stderr, envs: [{ env: 'PATH', value: '/usr/sbin:/usr/bin:/sbin:/bin' }] } });
  return { ack, stdio, stderr };
}

async function execIn(container: string, id: string, args: string[]): Promise<{ ack: CtlFrame; stdio: number }> {
  const stdio = ++seq;
  const ack = await call(Code.EXECCMD, { container, process: { id, args, stdio, stderr: ++seq, envs: [{ env: 'PATH', value: '/usr/sbin:/usr/bin:/sbin:/bin' }] } });
  return { ack, stdio };
}

async function finished(container: string, process = container): Promise<number> {
  const f = await ctl.next((x) => event(x) && decodeJson<{ container: string; process: string }>(x.payload).process === process && decodeJson<{ container: string }>(x.payload).container === container);
  return decodeJson<{ status: number }>(f.payload).status;
}

async function output(stdio: number): Promise<string> {
  let text = '';
  for (;;) {
    const f = await tty.next((x) => x.seq === stdio);
    if (f.payload.byteLength === 0) return text;
    text += Buffer.from(f.payload).toString();
  }
}

describe('hyperstart guest, stock mode', () => {
  beforeAll(() => attach());
  afterAll(() => detach());

  it('sends every ERROR with an empty payload, never a reason', async () => {
    const refused = [
      await call(99),
      await call(Code.GETPOD_DEPRECATED),
      await call(Code.NEWCONTAINER, { id: 'early', process: { args: ['true'] } }), // before STARTPOD
      await call(Code.KILLCONTAINER, { container: 'nope', signal: 9 }),
    ];
    expect(await call(Code.STARTPOD, { hostname: 'stock' })).toEqual({ code: Code.ACK, payload: new Uint8Array() });
    refused.push(await call(Code.REMOVECONTAINER, { container: 'nope' }));
    for (const f of refused) expect(f).toEqual({ code: Code.ERROR, payload: new Uint8Array() });
  });

  it('refuses the virtactors extension codes, the probe included, with empty ERRORs', async () => {
    for (const code of [Code.EXTENSIONS, Code.PSCONTAINER, Code.PAUSECONTAINER, Code.RESUMECONTAINER]) {
      expect(await call(code, { container: 'x', format: 'json', psargs: [] })).toEqual({ code: Code.ERROR, payload: new Uint8Array() });
    }
  });

  it('acknowledges NEWCONTAINER and EXECCMD with no pid', async () => {
    const c = await newContainer('nopid', ['sleep', '60']);
    expect(c.ack).toEqual({ code: Code.ACK, payload: new Uint8Array() });
    const e = await execIn('nopid', 'e1', ['sleep', '61']);
    expect(e.ack).toEqual({ code: Code.ACK, payload: new Uint8Array() });
    expect((await call(Code.KILLCONTAINER, { container: 'nopid', signal: 9 })).code).toBe(Code.ACK);
    await finished('nopid', 'e1');
    await finished('nopid');
  });

  it('frees a container when its init exits: a later REMOVECONTAINER gets ERROR, the id can start again', async () => {
    const c = await newContainer('brief', ['sh', '-c', 'exit 3']);
    expect(c.ack.code).toBe(Code.ACK);
    expect(await finished('brief')).toBe(3);
    expect(await call(Code.REMOVECONTAINER, { container: 'brief' })).toEqual({ code: Code.ERROR, payload: new Uint8Array() });
    expect((await newContainer('brief', ['true'])).ack.code).toBe(Code.ACK);
    expect(await finished('brief')).toBe(0);
    // A container that still runs is not removed either.
    await newContainer('busy', ['sleep', '60']);
    expect((await call(Code.REMOVECONTAINER, { container: 'busy' })).code).toBe(Code.ERROR);
    await call(Code.KILLCONTAINER, { container: 'busy', signal: 9 });
    await finished('busy');
  });

  it('sends EOF on the stdio stream only, never on the stderr stream', async () => {
    const c = await newContainer('streams', ['sh', '-c', 'echo out; echo err >&2']);
    expect(await output(c.stdio)).toBe('out\n');
    expect(Buffer.from((await tty.next((f) => f.seq === c.stderr)).payload).toString()).toBe('err\n');
    expect(await finished('streams')).toBe(0);
    // Other traffic after the exit, then not one frame more on stderr's seq.
    expect((await call(Code.PING)).code).toBe(Code.ACK);
    await new Promise((r) => setTimeout(r, 300));
    expect(tty.frames.filter((f) => f.seq === c.stderr)).toEqual([]);
  });

  it('reports a process killed by a signal with status 0; a real exit status as it is', async () => {
    await newContainer('term', ['sleep', '60']);
    expect((await call(Code.KILLCONTAINER, { container: 'term', signal: 15 })).code).toBe(Code.ACK);
    expect(await finished('term')).toBe(0);
    await newContainer('host', ['sleep', '60']);
    await execIn('host', 'killed', ['sleep', '61']);
    expect((await call(Code.SIGNALPROCESS, { container: 'host', process: 'killed', signal: 9 })).code).toBe(Code.ACK);
    expect(await finished('host', 'killed')).toBe(0);
    await execIn('host', 'seven', ['sh', '-c', 'exit 7']);
    expect(await finished('host', 'seven')).toBe(7);
    await call(Code.KILLCONTAINER, { container: 'host', signal: 9 });
    expect(await finished('host')).toBe(0);
  });
});

describe('hyperstart guest, stock mode, as PID 1: one pid namespace for the pod', () => {
  let rootfs: string;
  beforeAll(async () => {
    rootfs = buildBusyboxRootfs();
    mkdirSync(`${rootfs}/proc`);
    symlinkSync('busybox', `${rootfs}/bin/ps`);
    await attach({ pid1: true, procIn: [rootfs] });
    expect((await call(Code.STARTPOD, { hostname: 'pod' })).code).toBe(Code.ACK);
  });
  afterAll(async () => {
    await detach();
    rmSync(rootfs, { recursive: true, force: true });
  });
  afterEach(() => {
    ctl.frames.length = 0;
  });

  it("shows the pod's init as pid 1 and the other containers' processes to ps in a container", async () => {
    expect((await newContainer('a', ['sleep', '101'], rootfs)).ack.code).toBe(Code.ACK);
    expect((await newContainer('b', ['sleep', '102'], rootfs)).ack.code).toBe(Code.ACK);
    const ps = await execIn('a', 'ps', ['ps', '-o', 'pid,args']);
    expect(ps.ack.code).toBe(Code.ACK);
    const lines = (await output(ps.stdio)).trim().split('\n');
    expect(lines[0]).toMatch(/PID\s+COMMAND/);
    expect(lines).toContainEqual(expect.stringMatching(/^\s*1\s+.*node .*hyperstart\/main\.js/));
    expect(lines).toContainEqual(expect.stringMatching(/^\s*\d+\s+\S*sleep 101$/));
    expect(lines).toContainEqual(expect.stringMatching(/^\s*\d+\s+\S*sleep 102$/));
  });

  it("shows busybox's ps -o pid=,args= as `ps -o pid= args=` in its own line", async () => {
    const ps = await execIn('a', 'ps2', ['ps', '-o', 'pid=,args=']);
    expect(ps.ack.code).toBe(Code.ACK);
    const lines = (await output(ps.stdio)).trim().split('\n');
    // The ps process's own line (our guest's nsenter wrapper around it aside).
    const own = lines.filter((l) => !l.includes('nsenter') && /\bps -o/.test(l));
    expect(own).toEqual([expect.stringMatching(/^\s*\d+\s+\S*ps -o pid= args=$/)]);
  });
});
