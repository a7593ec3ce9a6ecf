// The host end of a VM's hyperstart channels (HyperstartRelay) against qemu's two ports
// with a guest behind them that greets and answers PING, on unix sockets (no VM: what is
// checked is the host end). In a file of its own: it counts the process's timers, which
// other suites' connections would change meanwhile.
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { HyperstartRelay } from '../../actors/backends/vm/channels.js';
import { Code } from '../../protos/hyperstart/codes.js';
import { CtlDecoder, encodeCtl } from '../../protos/hyperstart/frame.js';
describe('hyperstart channel of a VM (host end)', () => {
  let dir: string;
  const ports: Server[] = [];
  let relay: HyperstartRelay | undefined;

  afterAll(() => {
    relay?.close();
    for (const p of ports) p.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is ready once the guest greets it and answers PING, and keeps no timer of the boot deadline afterwards', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vc-channel-'));
    let pinged = 0;
    // qemu's two ports with the guest behind them: READY on ctl, then ACK to each PING.
    const ctl = createServer((socket: Socket) => {
      const decoder = new CtlDecoder();
      socket.on('data', (chunk: Buffer) => {
        for (const f of decoder.push(chunk)) {
          if (f.code === Code.PING) pinged++;
          socket.write(encodeCtl(Code.ACK));
        }
      });
      socket.write(encodeCtl(Code.READY));
    });
    const tty = createServer(() => {});
    for (const [server, name] of [[ctl, 'ctl.serial'], [tty, 'tty.serial']] as const) {
      ports.push(server);
      await new Promise<void>((r) => server.listen(join(dir, name), r));
      server.unref();
    }
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    relay = new HyperstartRelay(join(dir, 'ctl.serial'), join(dir, 'tty.serial'), pino({ level: 'silent' }), () => false, new Promise<never>(() => {}));
    // A boot deadline as long as a VM's: a timer of it left behind would hold the process that long.
    await relay.ready(Date.now() + 600_000);
    expect(pinged).toBe(1);
    // At most as many as before: other timers of the process may have ended meanwhile.
    expect(timers()).toBeLessThanOrEqual(before);
  });
});
