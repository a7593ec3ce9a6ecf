// What a host admits: at most VC_MAX_SANDBOXES sandboxes (concurrent creates included),
// and no guest or VM that would leave it less memory than its reserve. A refusal is
// ResourceExhausted, leaves nothing behind, and the host keeps serving.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { availableMiB } from '../../actors/backends/memory.js';
import { sandboxProcesses } from '../helpers/processes.js';
import { hostAuth, startTestHost, useRuntime } from '../helpers/runtime.js';

const rt = useRuntime({ host: 'capped', maxSandboxes: 2 });

describe('admission', () => {
  it('holds at most VC_MAX_SANDBOXES sandboxes, counting creates in flight; a refused id stays free', async () => {
    const creates = await Promise.all(['a', 'b', 'c', 'd'].map((id) => rt.client.request('SandboxCreate', {}, { sandbox: { id, agent: 'noop' } })));
    const refused = creates.filter((r) => r.error);
    expect(creates.filter((r) => r.ok)).toHaveLength(2);
    expect(refused.map((r) => r.error)).toEqual([
      expect.objectContaining({ code: 'ResourceExhausted', message: expect.stringMatching(/holds 2 sandboxes, its most \(VC_MAX_SANDBOXES=2\)/) }),
      expect.objectContaining({ code: 'ResourceExhausted' }),
    ]);
    const made = creates.flatMap((r) => (r.ok ? [r.sandbox!.id!] : []));
    const free = ['a', 'b', 'c', 'd'].filter((id) => !made.includes(id));
    for (const id of free) expect((await rt.client.request('SandboxStatus', { sid: id }, {})).error).toMatchObject({ code: 'NotFound' });
    // One deleted: there is room again, for an id refused before.
    await rt.ok('SandboxDelete', { sid: made[0]! }, { force: true });
    expect((await rt.ok('SandboxCreate', {}, { sandbox: { id: free[0]!, agent: 'noop' } })).sandbox).toMatchObject({ id: free[0], state: 'ready' });
    for (const id of [made[1]!, free[0]!]) await rt.ok('SandboxDelete', { sid: id }, { force: true });
  });

  it("starts no guest or VM that would eat into the host's memory reserve; sandboxes without a guest still come", async () => {
    const available = await availableMiB();
    expect(available).toBeGreaterThan(0);
    // A reserve larger than what is available: every guest would eat into it.
    const tight = await startTestHost(rt.server.url, { ...hostAuth(rt.server), host: 'tight', memoryReserveMiB: available! * 2 });
    try {
      for (const backend of ['namespace', 'vm'] as const) {
        const sid = `mem-${backend}`;
        const reply = await rt.client.request('HostSandboxCreate', { host: 'tight' }, { sandbox: { id: sid, agent: 'kata', backend }, start: true });
        expect(reply.error).toMatchObject({ code: 'ResourceExhausted', message: expect.stringMatching(/needs about \d+ MiB and the host has \d+ MiB available, \d+ MiB of which it keeps for itself \(VC_MEMORY_RESERVE_MIB\)/) });
        expect(await sandboxProcesses(sid)).toEqual([]);
        expect(existsSync(join(tight.runRoot, sid))).toBe(false);
      }
      expect((await rt.ok('HostSandboxCreate', { host: 'tight' }, { sandbox: { id: 'mem-noop', agent: 'noop' }, start: true })).sandbox).toMatchObject({ state: 'running' });
      await rt.ok('SandboxDelete', { sid: 'mem-noop' }, { force: true });
    } finally {
      await tight.stop();
    }
  });
});
