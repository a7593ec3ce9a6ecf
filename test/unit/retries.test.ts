// A client's second try of a command: dropped while the first runs and shortly after it
// ended, run when no first try reached this host; identical bodies only.
import { describe, expect, it } from 'vitest';
import { RecentCommands } from '../../bus/retries.js';

const body = (s: string) => new TextEncoder().encode(s);

describe('RecentCommands', () => {
  it('knows a command while it runs and for its window after, and only that command', async () => {
    const recent = new RecentCommands(100);
    const stop = RecentCommands.key('vc.v1.sandbox.s1.stop', body('{}'));
    const exec = RecentCommands.key('vc.v1.sandbox.s1.container.c1.exec', body('{"args":["true"]}'));
    expect(recent.has(stop)).toBe(false);
    recent.begin(stop);
    expect(recent.has(stop)).toBe(true);
    expect(recent.has(exec)).toBe(false);
    expect(recent.has(RecentCommands.key('vc.v1.sandbox.s2.stop', body('{}')))).toBe(false);
    expect(recent.has(RecentCommands.key('vc.v1.sandbox.s1.container.c1.exec', body('{"args":["false"]}')))).toBe(false);
    recent.end(stop);
    expect(recent.has(stop)).toBe(true);
    await new Promise((r) => setTimeout(r, 150));
    expect(recent.has(stop)).toBe(false);
    // Two of a kind running: it is known until both ended.
    recent.begin(exec);
    recent.begin(exec);
    recent.end(exec);
    await new Promise((r) => setTimeout(r, 150));
    expect(recent.has(exec)).toBe(true);
    recent.end(exec);
    expect(recent.has(exec)).toBe(true);
  });
});
