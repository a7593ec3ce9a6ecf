// A fork bomb inside a container, for every guest agent: a namespace sandbox that asks
// for no pids limit gets the host's (VC_SANDBOX_PIDS_MAX, 4096 unless set), so the bomb
// stops at it, the host and the runtime go on, and a delete ends every process of it.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sandboxCgroupDirs } from '../backends/helpers.js';
import { sandboxProcesses } from '../helpers/processes.js';
import { hostAuth, startTestHost, useRuntime } from '../helpers/runtime.js';
import { GUEST_AGENTS } from './agents.js';

const LIMIT = 64;
const rt = useRuntime({ host: 'pids', sandboxPidsMax: LIMIT });
const slowMonitor = { intervalMs: 60_000, deadlineMs: 60_000 };

/** A pids file of the sandbox's cgroup (in the pids hierarchy on v1, the one directory on v2). */
async function pidsFile(sid: string, file: 'pids.max' | 'pids.current'): Promise<string[]> {
  const found: string[] = [];
  for (const dir of await sandboxCgroupDirs(sid)) {
    const v = await readFile(join(dir, file), 'utf8').catch(() => undefined);
    if (v !== undefined) found.push(v.trim());
  }
  return found;
}
const pidsMax = (sid: string) => pidsFile(sid, 'pids.max');

/** The sandbox's processes running `args`. */
async function running(sid: string, args: string): Promise<number> {
  let n = 0;
  for (const pid of await sandboxProcesses(sid)) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').join(' ').trim() === args) n++;
  }
  return n;
}

for (const agent of GUEST_AGENTS) {
  describe(`${agent}: a fork bomb in a container`, () => {
    it('stops at the sandbox pids limit; the sandbox still answers, and a delete ends every process', async () => {
      const sid = `bomb-${agent}`;
      await rt.ok('SandboxCreate', {}, { sandbox: { id: sid, agent, backend: 'namespace', monitor: slowMonitor, containers: [{ id: 'c', args: ['sleep', '600'] }] }, start: true });
      expect(await pidsMax(sid)).toEqual([String(LIMIT)]);
      // Three times the limit in background sleeps: the forks past the limit fail.
      const bomb = await rt.ok('ContainerExec', { sid, cid: 'c' }, { args: ['sh', '-c', `n=0; while [ $n -lt ${LIMIT * 3} ]; do sleep 300 & n=$((n+1)); done 2>/dev/null; echo tried $n`] });
      expect(bomb.execId).toBeTruthy();
      // The kernel counts the guest's threads too: what the limit left went to sleeps, the rest was refused.
      const [current] = await pidsFile(sid, 'pids.current');
      expect(Number(current)).toBeLessThanOrEqual(LIMIT);
      const sleeps = await running(sid, 'sleep 300');
      expect(sleeps).toBeGreaterThan(0);
      expect(sleeps).toBeLessThan(LIMIT);
      expect((await rt.ok('SandboxStatus', { sid }, {})).sandbox).toMatchObject({ state: 'running' });
      await rt.ok('SandboxDelete', { sid }, { force: true });
      expect(await sandboxProcesses(sid)).toEqual([]);
    });
  });
}

describe('the default pids limit', () => {
  it('is 4096 for a sandbox that asks for none, on a host that sets none', async () => {
    const plain = await startTestHost(rt.server.url, { ...hostAuth(rt.server), host: 'pids-default' });
    try {
      await rt.ok('HostSandboxCreate', { host: 'pids-default' }, { sandbox: { id: 'pids-default', agent: 'kata', backend: 'namespace', monitor: slowMonitor }, start: true });
      expect(await pidsMax('pids-default')).toEqual(['4096']);
      await rt.ok('SandboxDelete', { sid: 'pids-default' }, { force: true });
    } finally {
      await plain.stop();
    }
  });
});
