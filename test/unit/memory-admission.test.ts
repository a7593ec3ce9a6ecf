// What the memory admission counts as available (actors/backends/memory.ts): the kernel's
// MemAvailable, or less where the runtime's own cgroup has a limit, read from copies of
// /proc/meminfo, /proc/self/cgroup and the cgroup files laid out as the kernel has them.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { availableMiB, requireMemory } from '../../actors/backends/memory.js';

const root = mkdtempSync(join(tmpdir(), 'vc-memory-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const MiB = 1024 * 1024;
let n = 0;
/** A machine's files: MemAvailable in MiB, the process's cgroup lines, and cgroup files. */
function machine(availableMiBs: number, selfCgroup: string, files: Record<string, string> = {}) {
  const dir = join(root, String(n++));
  const put = (path: string, text: string) => {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  };
  put('meminfo', `MemTotal:       24683432 kB\nMemAvailable:   ${availableMiBs * 1024} kB\n`);
  put('self-cgroup', selfCgroup);
  for (const [path, text] of Object.entries(files)) put(join('cg', path), text);
  return { meminfo: join(dir, 'meminfo'), selfCgroup: join(dir, 'self-cgroup'), cgroupRoot: join(dir, 'cg') };
}

describe('memory available to new guests', () => {
  it("is MemAvailable where the runtime's cgroup has no limit (v1's 2^63, v2's max)", () => {
    expect(availableMiB(machine(8192, '4:memory:/rt\n0::/\n', { 'memory/rt/memory.limit_in_bytes': '9223372036854771712\n', 'memory/rt/memory.usage_in_bytes': `${100 * MiB}\n` }))).toBe(8192);
    expect(availableMiB(machine(8192, '0::/rt\n', { 'rt/memory.max': 'max\n', 'rt/memory.current': `${100 * MiB}\n` }))).toBe(8192);
  });

  it("is what the runtime's cgroup limit leaves, when that is less (v1 and v2)", () => {
    expect(availableMiB(machine(8192, '9:name=systemd:/\n4:memory:/rt\n0::/\n', { 'memory/rt/memory.limit_in_bytes': `${1024 * MiB}\n`, 'memory/rt/memory.usage_in_bytes': `${600 * MiB}\n` }))).toBe(424);
    expect(availableMiB(machine(8192, '0::/rt\n', { 'rt/memory.max': `${512 * MiB}\n`, 'rt/memory.current': `${100 * MiB}\n` }))).toBe(412);
    // A host with less left than the cgroup allows: the host's figure.
    expect(availableMiB(machine(300, '0::/rt\n', { 'rt/memory.max': `${4096 * MiB}\n`, 'rt/memory.current': '0\n' }))).toBe(300);
  });

  it('refuses a guest that would eat into the reserve, with ResourceExhausted', () => {
    expect(() => requireMemory(64, 256, 'the guest of sandbox s', 300)).toThrow(expect.objectContaining({ code: 'ResourceExhausted', message: expect.stringMatching(/needs about 64 MiB and the host has 300 MiB available, 256 MiB of which it keeps/) }));
    expect(() => requireMemory(64, 256, 'the guest of sandbox s', 320)).not.toThrow();
  });
});
