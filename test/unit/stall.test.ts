// The loop-stall detector the command service refuses late commands by: a blocked loop
// is seen while it blocks and for a moment after, a loop that turns is not.
import { describe, expect, it } from 'vitest';
import { LoopStall } from '../../bus/stall.js';

const block = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};
const turn = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Margins are wide (a 1.5 s block against a 0.6 s bound for a loop that turns): the
// suite runs beside others on 2 cores, where a worker may wait for a core a while.
describe('LoopStall', () => {
  it('sees a blocked loop, during the block and right after its timers ran again', async () => {
    const stall = new LoopStall(20);
    stall.start();
    try {
      await turn(60);
      expect(stall.stalledMs()).toBeLessThan(600);
      // A read in the same turn as the first tick after the block, after it (as after
      // SIGCONT, when the timers run before the socket is read): set now, it runs right
      // after the tick in the timers phase that follows the block.
      const inThatTurn = new Promise<number>((r) => setTimeout(() => r(stall.stalledMs()), 20));
      block(1500);
      // Read while still blocked: the whole block.
      expect(stall.stalledMs()).toBeGreaterThan(1200);
      expect(await inThatTurn).toBeGreaterThan(1200);
      // A later turn is fresh.
      await turn(60);
      expect(stall.stalledMs()).toBeLessThan(600);
    } finally {
      stall.stop();
    }
  });
});
