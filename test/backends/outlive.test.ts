// A guest outlives the runtime that started it (a later runtime reattaches to it): the
// backend runs in a child node process that then dies of SIGKILL.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostCgroupDriver } from '../../actors/backends/cgroups/index.js';
import { groupMembers } from '../../actors/backends/guest-files.js';
import type { Incarnation } from '../../actors/backends/backend.js';
import { alive, cgroupOwner, incarnation, isRoot, quietLog, sandboxCgroupDirs, sandboxId, sandboxProcesses, tempDir, waitFor } from './helpers.js';

const fixture = fileURLToPath(new URL('./fixtures/start-and-die.ts', import.meta.url));
let tmp: { dir: string; remove: () => Promise<void> };

beforeAll(async () => {
  tmp = await tempDir('outlive');
});

afterAll(async () => {
  await tmp?.remove();
});

/** Runs the fixture; resolves with the guest pid once the "runtime" is dead. */
async function startAndDie(type: 'namespace' | 'process', id: string, runDir: string, inc: Incarnation): Promise<number> {
  const runtime = spawn(process.execPath, ['--import', 'tsx', fixture, type, id, runDir, inc.host, inc.uid], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  runtime.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const [code, signal] = (await once(runtime, 'exit')) as [number | null, string | null];
  expect(signal, `the fixture failed with status ${code}`).toBe('SIGKILL');
  return Number(out.trim());
}

/** The session id of a process: the guest must not share the runtime's. */
async function sessionOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
}

describe('a guest outlives the runtime that started it', () => {
  // Namespaces need root (CI runs as root).
  it.skipIf(!isRoot)('namespace backend', async () => {
    const id = sandboxId('outlive-ns');
    const runDir = join(tmp.dir, id);
    const inc = incarnation();
    const pid = await startAndDie('namespace', id, runDir, inc);
    try {
      expect(alive(pid)).toBe(true);
      expect((await readFile(join(runDir, 'guest.pid'), 'utf8')).trim()).toBe(String(pid));
      expect(await sessionOf(pid)).not.toBe(await sessionOf(process.pid));
      // The guest keeps its cgroup where the host has a cgroup driver, and has none where it has not.
      expect((await sandboxCgroupDirs(id)).length > 0).toBe(!!(await hostCgroupDriver(quietLog)));
    } finally {
      // What a later runtime does for a guest it will not reattach to.
      process.kill(pid, 'SIGKILL');
      await waitFor(() => (alive(pid) ? undefined : true), 'the guest to die');
      await (await hostCgroupDriver(quietLog))?.open(cgroupOwner(id, inc)).destroy();
    }
    expect(await sandboxProcesses(id)).toEqual([]);
    expect(await sandboxCgroupDirs(id)).toEqual([]);
  });

  it('process backend', async () => {
    const id = sandboxId('outlive-proc');
    const runDir = join(tmp.dir, id);
    const pid = await startAndDie('process', id, runDir, incarnation());
    try {
      expect(alive(pid)).toBe(true);
      expect((await readFile(join(runDir, 'guest.pid'), 'utf8')).trim()).toBe(String(pid));
      expect(await sessionOf(pid)).toBe(pid);
    } finally {
      process.kill(-pid, 'SIGKILL');
      await waitFor(async () => ((await groupMembers(pid)).length === 0 ? true : undefined), 'the guest group to die');
    }
    expect(await sandboxProcesses(id)).toEqual([]);
  });
});
