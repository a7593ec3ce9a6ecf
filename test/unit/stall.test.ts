// The loop-stall detector the command service refuses late commands by: a blocked loop
// is seen while it blocks and for a moment after, a loop that turns is not.
import { describe, expect, it } from 'vitest';
import { LoopStall } from '../../bus/stall.js';

const block = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};
const turn = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('LoopStall', () => {
  it('sees a blocked loop, during the block and right after its timers ran again', async () => {
    const stall = new LoopStall(20);
    stall.start();
    try {
      await turn(60);
      expect(stall.stalledMs()).toBeLessThan(150);
      // A read in the same turn as the first tick after the block, after it (as after
      // SIGCONT, when the timers run before the socket is read): set now, it runs right
      // after the tick in the timers phase that follows the block.
      const inThatTurn = new Promise<number>((r) => setTimeout(() => r(stall.stalledMs()), 20));
      block(500);
      // Read while still blocked: the whole block.
      expect(stall.stalledMs()).toBeGreaterThan(350);
      expect(await inThatTurn).toBeGreaterThan(350);
      // A later turn is fresh.
      await turn(60);
      expect(stall.stalledMs()).toBeLessThan(150);
    } finally {
      stall.stop();
    }
  });
});
