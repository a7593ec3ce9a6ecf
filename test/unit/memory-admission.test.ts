// What the memory admission counts as available (actors/backends/memory.ts): the kernel's
// MemAvailable, or less where the runtime's own cgroup has a limit, read from copies of
// /proc/meminfo and of the own cgroup's files.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { availableMiB, requireMemory, type MemorySources } from '../../actors/backends/memory.js';

const root = mkdtempSync(join(tmpdir(), 'vc-memory-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const MiB = 1024 * 1024;
let n = 0;
/**
 * A machine: MemAvailable in MiB, and the runtime's own cgroup (v1's memory hierarchy or
 * the unified one) with the files in it, as cgroups/host.ts finds them.
 */
function machine(availableMiBs: number, version: 1 | 2, files: Record<string, string> = {}): MemorySources {
  const dir = join(root, String(n++));
  const own = join(dir, 'cg', 'rt');
  mkdirSync(own, { recursive: true });
  writeFileSync(join(dir, 'meminfo'), `MemTotal:       24683432 kB\nMemAvailable:   ${availableMiBs * 1024} kB\n`);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(own, name), text);
  const hierarchy = { mount: join(dir, 'cg'), controllers: ['memory'], own, writable: true };
  return { meminfo: join(dir, 'meminfo'), cgroups: version === 1 ? { v1: [hierarchy], v2: undefined } : { v1: [], v2: hierarchy } };
}

describe('memory available to new guests', () => {
  it("is MemAvailable where the runtime's cgroup has no limit (v1's 2^63, v2's max)", async () => {
    expect(await availableMiB(machine(8192, 1, { 'memory.limit_in_bytes': '9223372036854771712\n', 'memory.usage_in_bytes': `${100 * MiB}\n` }))).toBe(8192);
    expect(await availableMiB(machine(8192, 2, { 'memory.max': 'max\n', 'memory.current': `${100 * MiB}\n` }))).toBe(8192);
  });

  it("is what the runtime's cgroup limit leaves, when that is less (v1 and v2)", async () => {
    expect(await availableMiB(machine(8192, 1, { 'memory.limit_in_bytes': `${1024 * MiB}\n`, 'memory.usage_in_bytes': `${600 * MiB}\n` }))).toBe(424);
    expect(await availableMiB(machine(8192, 2, { 'memory.max': `${512 * MiB}\n`, 'memory.current': `${100 * MiB}\n` }))).toBe(412);
    // A host with less left than the cgroup allows: the host's figure.
    expect(await availableMiB(machine(300, 2, { 'memory.max': `${4096 * MiB}\n`, 'memory.current': '0\n' }))).toBe(300);
  });

  it('refuses a guest that would eat into the reserve, with ResourceExhausted', async () => {
    await expect(requireMemory(64, 256, 'the guest of sandbox s', 300)).rejects.toThrow(expect.objectContaining({ code: 'ResourceExhausted', message: expect.stringMatching(/needs about 64 MiB and the host has 300 MiB available, 256 MiB of which it keeps/) }));
    await expect(requireMemory(64, 256, 'the guest of sandbox s', 320)).resolves.toBeUndefined();
  });
});
