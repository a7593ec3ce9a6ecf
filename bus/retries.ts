// Second tries of a command, told apart from new ones. A client that has had no answer
// for a while sends the command once more, addressed to a host that answers
// (bus/client.ts), saying how long ago it sent the first (RETRY_HEADER, in ms); the
// first try may be running on its owner all along (a slow exec), or have landed on a
// host that was stopped. The owner remembers what it runs (subject and a hash of the
// body) and when each began and ended: a second try matching one that began after the
// client sent its first, and still runs or has just ended (its answer is on its way),
// is dropped (the first answers the client); anything else runs. A command the client
// sent before with the same body (stop, start, stop) began earlier, or ended long ago:
// a second try comes only after the client heard nothing for a while.
export class RecentCommands {
  /** key → commands of that key running, when the last one began and ended. */
  private readonly seen = new Map<string, { running: number; begunAt: number; endedAt: number }>();

  constructor(
    /** How long a finished command is remembered. */
    private readonly keepMs: number,
  ) {}

  static key(subject: string, data: Uint8Array): string {
    // FNV-1a: identical bodies collide by design, different ones almost never.
    let h = 0x811c9dc5;
    for (let i = 0; i < data.length; i++) h = Math.imul(h ^ data[i]!, 0x01000193);
    return `${subject} ${data.length} ${(h >>> 0).toString(36)}`;
  }

  /**
   * Whether a second try, whose first the client sent `firstSentAgoMs` ago, is the
   * echo of a command that began here since (give or take `slackMs`, the second try's
   * way here) and runs, or ended within `endedWithinMs`.
   */
  has(key: string, firstSentAgoMs: number, slackMs: number, endedWithinMs: number): boolean {
    this.trim();
    const s = this.seen.get(key);
    if (!s) return false;
    const now = performance.now();
    return now - s.begunAt <= firstSentAgoMs + slackMs && (s.running > 0 || now - s.endedAt <= endedWithinMs);
  }

  begin(key: string): void {
    const now = performance.now();
    const s = this.seen.get(key);
    if (s) {
      s.running++;
      s.begunAt = now;
    } else {
      this.seen.set(key, { running: 1, begunAt: now, endedAt: 0 });
    }
  }

  end(key: string): void {
    const s = this.seen.get(key);
    if (!s) return;
    s.running--;
    s.endedAt = performance.now();
    // Re-inserted at the end: the map stays in order of endings for trim().
    this.seen.delete(key);
    this.seen.set(key, s);
    this.trim();
  }

  private trim(): void {
    const before = performance.now() - this.keepMs;
    for (const [key, s] of this.seen) {
      if (s.running > 0) continue;
      if (s.endedAt >= before) break;
      this.seen.delete(key);
    }
  }
}
