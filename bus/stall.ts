// Whether this process's event loop has just been stalled: the process was stopped
// (SIGSTOP, a frozen VM) or something blocked the loop. A message read right after a
// stall may have waited all that time in the socket, long after its sender gave up on
// this host and tried another (see bus/command-service.ts): such a command is refused
// rather than carried out late.
/** Gaps between ticks longer than this (beyond the tick) count as a stall. */
const STALL_MS = 50;

export class LoopStall {
  private last = performance.now();
  private timer: ReturnType<typeof setInterval> | undefined;
  /** The stall a tick just saw, until the end of that turn of the loop (setImmediate). */
  private stall = 0;

  constructor(private readonly everyMs = 100) {}

  start(): void {
    this.last = performance.now();
    this.timer = setInterval(() => this.tick(), this.everyMs);
    this.timer.unref?.();
  }

  /**
   * How long the loop stood still, as of now: the loop has not turned for that long, or
   * this turn is the first after such a stall. (A process continued after SIGSTOP may
   * run its timers before it reads its socket: libuv's poll is interrupted, the timers
   * come first in the next turn, the socket's backlog is read in the same turn right
   * after; what arrives in a later turn is fresh.)
   */
  stalledMs(): number {
    return Math.max(0, performance.now() - this.last - this.everyMs, this.stall);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private tick(): void {
    const now = performance.now();
    const gap = now - this.last - this.everyMs;
    this.last = now;
    if (gap > STALL_MS) {
      this.stall = gap;
      setImmediate(() => (this.stall = 0));
    }
  }
}
