// A client's second try of a command: dropped when a command of the same subject and
// body began here since the client sent its first and still runs or has just ended;
// run otherwise (an earlier identical command, another body, another sandbox).
import { describe, expect, it } from 'vitest';
import { RecentCommands } from '../../bus/retries.js';
import { subjectOf } from '../../bus/commands.js';

const body = (s: string) => new TextEncoder().encode(s);
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SLACK = 20;
const JUST_ENDED = 50;

describe('RecentCommands', () => {
  it('matches a second try to a first that began since it was sent, and to nothing else', async () => {
    const recent = new RecentCommands(5_000);
    const has = (key: string, ago: number) => recent.has(key, ago, SLACK, JUST_ENDED);
    const start = RecentCommands.key(subjectOf('ContainerStart', { sid: 's1', cid: 'c1' }), body('{}'));
    const exec = RecentCommands.key(subjectOf('ContainerExec', { sid: 's1', cid: 'c1' }), body('{"args":["true"]}'));
    expect(has(start, 1000)).toBe(false);
    // An earlier start, ended long before the second try comes: not its first try.
    recent.begin(start);
    recent.end(start);
    await pause(120);
    expect(has(start, 1000)).toBe(false);
    // A slow exec that began since the client sent it: while it runs and just after.
    recent.begin(exec);
    expect(has(exec, 1000)).toBe(true);
    await pause(100);
    expect(has(exec, 1000)).toBe(true);
    recent.end(exec);
    expect(has(exec, 1000)).toBe(true);
    // ... but not for a second try whose first was sent after the exec began.
    expect(has(exec, 10)).toBe(false);
    // Another body, another sandbox.
    expect(has(RecentCommands.key(subjectOf('ContainerExec', { sid: 's1', cid: 'c1' }), body('{"args":["false"]}')), 1000)).toBe(false);
    expect(has(RecentCommands.key(subjectOf('ContainerExec', { sid: 's2', cid: 'c1' }), body('{"args":["true"]}')), 1000)).toBe(false);
    await pause(120);
    expect(has(exec, 1000)).toBe(false);
  });

  it('forgets what ended long ago, never what runs', async () => {
    const recent = new RecentCommands(50);
    const stop = RecentCommands.key(subjectOf('SandboxStop', { sid: 's1' }), body('{}'));
    recent.begin(stop);
    recent.end(stop);
    recent.begin(stop);
    await pause(100);
    recent.begin(RecentCommands.key(subjectOf('SandboxStop', { sid: 's2' }), body('{}')));
    expect(recent.has(stop, 10_000, 0, 10_000)).toBe(true);
  });
});
