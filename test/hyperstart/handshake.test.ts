// The driver against a scripted fake guest: the fake is the driver's peer, so it can
// misbehave on purpose (no READY, another API version, a slow answer, withheld NEXT).
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Code } from '../../protos/hyperstart/codes.js';
import { CtlDecoder, encodeCtl, encodeJson, encodeUint32, type CtlFrame } from '../../protos/hyperstart/frame.js';
import { VcError } from '../../bus/errors.js';
import { setupDriver, type DriverSetup } from './harness.js';

interface FakeGuest {
  /** Frames received on ctl, and the byte count of each socket read. */
  frames: CtlFrame[];
  reads: number[];
  ctl?: Socket;
  close(): Promise<void>;
}

type Script = (socket: Socket, guest: FakeGuest, frame: CtlFrame | undefined) => void;

/** Listens on both sockets of `dir`; `script` runs on connect (frame undefined) and per frame. */
async function fakeGuest(dir: string, script: Script, opts: { autoNext?: boolean } = {}): Promise<FakeGuest> {
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  const guest: FakeGuest = {
    frames: [],
    reads: [],
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    },
  };
  const listen = (path: string, onConn: (s: Socket) => void) =>
    new Promise<void>((resolve) => {
      const server = createServer((s) => {
        sockets.push(s);
        s.on('error', () => {});
        onConn(s);
      });
      servers.push(server);
      server.listen(path, () => resolve());
    });
  await listen(join(dir, 'hyper.sock'), (s) => {
    guest.ctl = s;
    const decoder = new CtlDecoder();
    s.on('data', (chunk: Buffer) => {
      guest.reads.push(chunk.byteLength);
      if (opts.autoNext !== false) s.write(encodeCtl(Code.NEXT, encodeUint32(chunk.byteLength)));
      for (const f of decoder.push(chunk)) {
        guest.frames.push(f);
        script(s, guest, f);
      }
    });
    script(s, guest, undefined);
  });
  await listen(join(dir, 'tty.sock'), () => {});
  return guest;
}

/**
 * A well-behaved handshake: READY on connect, VERSION answered with `version`, and the
 * EXTENSIONS probe refused with an empty ERROR, as a stock hyperstart refuses it.
 */
const handshake =
  (version = 4244, then?: Script, extensions?: number[]): Script =>
  (s, g, f) => {
    if (!f) s.write(encodeCtl(Code.READY));
    else if (f.code === Code.VERSION) s.write(encodeCtl(Code.ACK, encodeUint32(version)));
    else if (f.code === Code.EXTENSIONS) s.write(extensions ? encodeCtl(Code.ACK, encodeJson(extensions)) : encodeCtl(Code.ERROR));
    else then?.(s, g, f);
  };

let setup: DriverSetup | undefined;
let guest: FakeGuest | undefined;

afterEach(async () => {
  await setup?.cleanup();
  await guest?.close();
  setup = guest = undefined;
});

async function rejection(p: Promise<unknown>): Promise<VcError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VcError);
  return err as VcError;
}

describe('hyperstart handshake', () => {
  it('times out with a clear error when the guest never sends READY, having sent nothing', async () => {
    setup = await setupDriver({ readyTimeoutMs: 300 });
    guest = await fakeGuest(setup.dir, () => {});
    const err = await rejection(setup.agent.connect());
    expect(err.code).toBe('DeadlineExceeded');
    expect(err.message).toMatch(/sent no READY within 300 ms/);
    expect(err.message).toContain(join(setup.dir, 'hyper.sock'));
    expect(guest.reads).toEqual([]);
  });

  it('refuses a guest of another API version, naming both versions', async () => {
    setup = await setupDriver();
    guest = await fakeGuest(setup.dir, handshake(4242));
    const err = await rejection(setup.agent.connect());
    expect(err.code).toBe('FailedPrecondition');
    expect(err.message).toMatch(/API version 4242/);
    expect(err.message).toMatch(/version 4244/);
    expect(guest.frames.map((f) => f.code)).toEqual([Code.VERSION]);
  });

  it('reports an unreachable guest as Unavailable once the ready timeout passes', async () => {
    setup = await setupDriver({ readyTimeoutMs: 100 });
    const err = await rejection(setup.agent.connect());
    expect(err.code).toBe('Unavailable');
    expect(err.message).toMatch(/cannot connect to hyperstart guest/);
  });

  it('connects after READY and VERSION 4244, then answers PING within the deadline', async () => {
    setup = await setupDriver();
    guest = await fakeGuest(
      setup.dir,
      handshake(4244, (s, _g, f) => {
        if (f?.code === Code.PING) s.write(encodeCtl(Code.ACK));
      }),
    );
    await setup.agent.connect();
    await setup.agent.check(AbortSignal.timeout(1_000));
    expect(guest.frames.map((f) => f.code)).toEqual([Code.VERSION, Code.EXTENSIONS, Code.PING]);
  });

  it('asks once per connection which extensions the guest serves: ERROR means a stock hyperstart, whatever it says', async () => {
    const started = (s: Socket, f: CtlFrame) => {
      if ([Code.STARTPOD, Code.NEWCONTAINER, Code.PAUSECONTAINER, Code.PREPARECONTAINER].includes(f.code as never)) s.write(encodeCtl(Code.ACK));
    };
    // A stock hyperstart; an older guest of ours (no PREPARECONTAINER); ours now.
    for (const extensions of [undefined, [Code.PAUSECONTAINER, Code.RESUMECONTAINER, Code.PSCONTAINER], [Code.PAUSECONTAINER, Code.RESUMECONTAINER, Code.PSCONTAINER, Code.PREPARECONTAINER]]) {
      setup = await setupDriver();
      guest = await fakeGuest(setup.dir, handshake(4244, (s, _g, f) => f && started(s, f), extensions));
      await setup.agent.startSandbox({});
      await setup.agent.createContainer({ id: 'c', args: ['true'], env: [], cwd: '', user: '', terminal: false, rootfs: '', annotations: {} });
      expect(await setup.agent.startContainer('c')).toEqual({ pid: 0, pidUnknown: true });
      const paused = await setup.agent.pauseContainer('c').then(() => 'paused', (e: VcError) => e.message);
      expect(paused).toBe(extensions ? 'paused' : 'this hyperstart guest cannot pause containers: upstream hyperstart has no such command');
      const codes = guest.frames.map((f) => f.code);
      expect(codes.filter((c) => c === Code.EXTENSIONS)).toHaveLength(1);
      expect(codes.includes(Code.PAUSECONTAINER)).toBe(!!extensions);
      // The create prepares the container only in a guest that lists the code.
      expect(codes.includes(Code.PREPARECONTAINER)).toBe(!!extensions?.includes(Code.PREPARECONTAINER));
      await setup.cleanup();
      await guest.close();
    }
    setup = guest = undefined;
  });
});

describe('hyperstart transactions', () => {
  it('matches replies FIFO: a late ACK goes to the command that timed out, not the next one', async () => {
    setup = await setupDriver();
    let pings = 0;
    guest = await fakeGuest(
      setup.dir,
      handshake(4244, (s, _g, f) => {
        if (f?.code !== Code.PING) return;
        // First PING answered late (after the second arrives) with ERROR; second with ACK.
        if (++pings === 2) {
          s.write(encodeCtl(Code.ERROR, Buffer.from('late answer to the first ping')));
          s.write(encodeCtl(Code.ACK));
        }
      }),
    );
    await setup.agent.connect();
    const first = await rejection(setup.agent.check(AbortSignal.timeout(50)));
    expect(first.code).toBe('DeadlineExceeded');
    await setup.agent.check(AbortSignal.timeout(5_000));
    expect(pings).toBe(2);
  });

  it('writes at most 512 bytes ahead of the NEXT credit', async () => {
    const big = 'h'.repeat(1500);
    setup = await setupDriver({}, {}, { hostname: big });
    let credit = (_n: number) => {};
    guest = await fakeGuest(
      setup.dir,
      (s, g, f) => {
        handshake(4244, (sock, _g, frame) => {
          if (frame?.code === Code.STARTPOD) sock.write(encodeCtl(Code.ACK));
        })(s, g, f);
        credit = (n) => s.write(encodeCtl(Code.NEXT, encodeUint32(n)));
      },
      { autoNext: false },
    );
    // Without NEXT the VERSION frame (8 bytes) would block the next write; credit it by hand.
    const connecting = setup.agent.connect();
    await until(() => guest!.reads.length === 1);
    credit(8);
    await connecting;

    const started = setup.agent.startSandbox({});
    const received = () => guest!.reads.slice(1).reduce((a, b) => a + b, 0);
    let acked = 0;
    for (;;) {
      await until(() => received() > acked || guest!.frames.some((f) => f.code === Code.STARTPOD));
      if (guest.frames.some((f) => f.code === Code.STARTPOD)) break;
      // Nothing more arrives until the credit covers everything written so far.
      await new Promise((r) => setTimeout(r, 30));
      expect(received() - acked).toBeLessThanOrEqual(512);
      const got = received();
      credit(got - acked);
      acked = got;
    }
    await started;
    const frame = guest.frames.find((f) => f.code === Code.STARTPOD)!;
    expect(JSON.parse(Buffer.from(frame.payload).toString()).hostname).toBe(big);
    expect(frame.payload.byteLength).toBeGreaterThan(1500);
  });

  it('fails pending calls and reports the loss when the guest goes away', async () => {
    setup = await setupDriver();
    guest = await fakeGuest(
      setup.dir,
      handshake(4244, (s, _g, f) => {
        if (f?.code === Code.PING) s.destroy();
      }),
    );
    await setup.agent.connect();
    const err = await rejection(setup.agent.check(AbortSignal.timeout(5_000)));
    expect(err.code).toBe('Unavailable');
    await until(() => setup!.rec.lost.length > 0);
    expect(setup.rec.lost[0]).toMatch(/connection lost/);
  });

  it('drops the connection on a malformed frame instead of crashing', async () => {
    setup = await setupDriver();
    guest = await fakeGuest(
      setup.dir,
      handshake(4244, (s, _g, f) => {
        if (f?.code === Code.PING) s.write(Buffer.from([0, 0, 0, 9, 0, 0, 0, 3]));
      }),
    );
    await setup.agent.connect();
    const err = await rejection(setup.agent.check(AbortSignal.timeout(5_000)));
    expect(err.message).toMatch(/bad ctl frame: .*shorter than its 8-byte header/);
    await until(() => setup!.rec.lost.length > 0);
  });
});

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}
