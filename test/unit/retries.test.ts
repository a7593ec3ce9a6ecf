// A client's second try of a command: dropped when a command of the same subject and
// body began here since the client sent its first, run otherwise (an earlier identical
// command, another body, another sandbox).
import { describe, expect, it } from 'vitest';
import { RecentCommands } from '../../bus/retries.js';

const body = (s: string) => new TextEncoder().encode(s);
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('RecentCommands', () => {
  it('matches a second try to a first that began since it was sent, and to nothing else', async () => {
    const recent = new RecentCommands(5_000);
    const stop = RecentCommands.key('vc.v1.sandbox.s1.stop', body('{}'));
    const exec = RecentCommands.key('vc.v1.sandbox.s1.container.c1.exec', body('{"args":["true"]}'));
    expect(recent.has(stop, 1000)).toBe(false);
    recent.begin(stop);
    expect(recent.has(stop, 1000)).toBe(true);
    expect(recent.has(exec, 1000)).toBe(false);
    expect(recent.has(RecentCommands.key('vc.v1.sandbox.s2.stop', body('{}')), 1000)).toBe(false);
    expect(recent.has(RecentCommands.key('vc.v1.sandbox.s1.container.c1.exec', body('{"args":["false"]}')), 1000)).toBe(false);
    recent.end(stop);
    // Finished: still the first try of a second sent since.
    expect(recent.has(stop, 1000)).toBe(true);
    await pause(150);
    // A second try whose first was sent 100 ms ago: the stop that began 150 ms ago was an earlier command.
    expect(recent.has(stop, 100)).toBe(false);
    expect(recent.has(stop, 1000)).toBe(true);
    // Forgotten after its time.
    const short = new RecentCommands(50);
    short.begin(exec);
    short.end(exec);
    await pause(100);
    expect(short.has(exec, 10_000)).toBe(false);
    // Running, it is never forgotten.
    short.begin(exec);
    await pause(100);
    expect(short.has(exec, 10_000)).toBe(true);
  });
});
