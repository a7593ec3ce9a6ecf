// The OOM judgement's arithmetic, over cgroup files written in a temporary directory (the
// kernel's real counters are exercised in test/e2e/oom.test.ts and test/vm/kata.test.ts).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { oomCounters, OomWatch } from '../../actors/backends/cgroups/oom.js';

const root = mkdtempSync(join(tmpdir(), 'vc-oom-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A v1 memory cgroup with its oom_kill count and limit. */
function cgroup(dir: string, oomKills: number, limit: number): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'memory.oom_control'), `oom_kill_disable 0\nunder_oom 0\noom_kill ${oomKills}\n`);
  writeFileSync(join(dir, 'memory.limit_in_bytes'), `${limit}\n`);
}

describe('OOM counters', () => {
  it("a kill counted in a container's unlimited cgroup carries the sandbox's limit, the lowest on the way up", () => {
    const sandbox = join(root, 'sb');
    cgroup(sandbox, 0, 128 * 1024 ** 2);
    cgroup(join(sandbox, 'guest-group'), 0, 2 ** 63 - 4096);
    cgroup(join(sandbox, 'guest-group', 'c1'), 1, 2 ** 63 - 4096);
    expect(oomCounters(sandbox, 1, 'c1')).toEqual([
      { dir: join(sandbox, 'guest-group', 'c1'), oomKills: 1, limitBytes: 128 * 1024 ** 2 },
      { dir: sandbox, oomKills: 0, limitBytes: 128 * 1024 ** 2 },
    ]);
  });

  it('moved only when a counter grew since last seen; a counter that went down is a new cgroup counting from 0', () => {
    const watch = new OomWatch();
    const at = (n: number) => [{ dir: 'guest:c1', oomKills: n, limitBytes: 1 }];
    expect(watch.movedIn(at(0))).toBeUndefined();
    expect(watch.movedIn(at(2))).toMatchObject({ oomKills: 2 });
    expect(watch.movedIn(at(2))).toBeUndefined();
    // c1 deleted and created again: its new cgroup's first kill.
    expect(watch.movedIn(at(1))).toMatchObject({ oomKills: 1 });
  });
});
