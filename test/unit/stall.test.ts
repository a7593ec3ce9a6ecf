// The loop-stall detector the command service refuses late commands by: a blocked loop
// is seen while it blocks and by what its socket delivers right after, a loop that turns
// is not. Margins are wide (a 1.5 s block against a 0.6 s bound for a loop that turns):
// the suite runs beside others on 2 cores, where a worker may wait for a core a while.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { LoopStall } from '../../bus/stall.js';

const block = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};
const turn = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('LoopStall', () => {
  it('sees a blocked loop while it blocks and in what the socket delivers after, not in a later turn', async () => {
    const stall = new LoopStall(20);
    let server: Server | undefined;
    let client: Socket | undefined;
    stall.start();
    try {
      // A loopback connection: a byte written before the block waits in the socket, as a
      // command does while a host is stopped, and is read in the first turn after it.
      const seenOnRead = new Promise<number>((resolve) => {
        server = createServer((sock) => sock.once('data', () => resolve(stall.stalledMs())));
      });
      await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
      const port = (server!.address() as { port: number }).port;
      client = await new Promise<Socket>((r) => {
        const c = connect(port, '127.0.0.1', () => r(c));
      });
      await turn(60);
      expect(stall.stalledMs()).toBeLessThan(600);
      client.write('x');
      block(1500);
      // Read while still blocked: the whole block.
      expect(stall.stalledMs()).toBeGreaterThan(1200);
      expect(await seenOnRead).toBeGreaterThan(1200);
      // A later turn is fresh.
      await turn(60);
      expect(stall.stalledMs()).toBeLessThan(600);
    } finally {
      stall.stop();
      client?.destroy();
      server?.close();
    }
  });
});
