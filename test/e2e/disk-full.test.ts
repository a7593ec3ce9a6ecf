// A full disk under the runtime's state directory, for every guest agent: the run root is
// a small tmpfs of the test's own, filled with a file of the test's own. A create then
// fails with ResourceExhausted and leaves nothing (no guest, no run directory, the id free
// again), an exec in a running sandbox says what ran out, the running sandbox keeps
// serving and can be deleted, and once space is freed the same create works.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VcClient } from '../../bus/client.js';
import { startTestServer, type TestServer } from '../helpers/nats.js';
import { sandboxProcesses } from '../helpers/processes.js';
import { connectClient, hostAuth, startTestHost, type TestHost } from '../helpers/runtime.js';
import { mountSmallDisk, type SmallDisk } from '../helpers/small-disk.js';
import { waitFor } from '../backends/helpers.js';
import { GUEST_AGENTS } from './agents.js';

const slowMonitor = { intervalMs: 60_000, deadlineMs: 60_000 };

describe('a full disk under the run root', () => {
  let server: TestServer;
  let host: TestHost;
  let client: VcClient;
  let small: SmallDisk;
  let disk: string;

  beforeAll(async () => {
    small = mountSmallDisk(4096);
    disk = small.dir;
    server = await startTestServer();
    host = await startTestHost(server.url, { ...hostAuth(server), host: 'full', runRoot: disk });
    client = await connectClient(server.url, server.auth?.operator);
  });
  afterAll(async () => {
    await client?.close();
    await host?.stop();
    await server?.dispose();
    small?.remove();
  });

  for (const agent of GUEST_AGENTS) {
    it(`${agent}: a container's output is kept again once the disk has room`, async () => {
      const sid = `out-${agent}`;
      // About 20 KiB/s, each line numbered: the log's last page fills within a moment.
      const chatty = 's=xxxxxxxxxx; s=$s$s$s$s$s$s$s$s$s$s; s=$s$s$s$s$s$s$s$s$s$s; i=0; while :; do i=$((i+1)); echo "n$i $s"; sleep 0.05; done';
      await client.call('SandboxCreate', {}, { sandbox: { id: sid, agent, backend: 'namespace', monitor: slowMonitor, containers: [{ id: 'c', args: ['sh', '-c', chatty] }] }, start: true });
      const lastLine = async () => {
        const out = (await client.call('ContainerLogs', { sid, cid: 'c' }, {})).stdout ?? '';
        return Math.max(0, ...[...out.matchAll(/^n(\d+) x+$/gm)].map((m) => Number(m[1])));
      };
      const until = (test: () => Promise<boolean>, what: string) => waitFor(async () => ((await test()) ? true : undefined), what);
      await until(async () => (await lastLine()) > 0, 'the first line');
      small.fill();
      try {
        // Lines printed meanwhile are refused by the disk.
        await sleep(500);
      } finally {
        small.free();
      }
      const before = await lastLine();
      await until(async () => (await lastLine()) > before + 5, 'lines after the disk had room again');
      await client.call('SandboxDelete', { sid }, { force: true });
    });

    it(`${agent}: a create fails with ResourceExhausted and leaves nothing; a running sandbox keeps serving; after space is freed the create works`, async () => {
      const running = `run-${agent}`;
      const refused = `new-${agent}`;
      const sandbox = (id: string) => ({ id, agent, backend: 'namespace', monitor: slowMonitor, containers: [{ id: 'c', args: ['sleep', '60'] }] });
      await client.call('SandboxCreate', {}, { sandbox: sandbox(running), start: true });
      small.fill();
      try {
        const create = await client.request('SandboxCreate', {}, { sandbox: sandbox(refused), start: true });
        expect(create.error).toMatchObject({ code: 'ResourceExhausted', message: expect.stringMatching(/no space left on device/i) });
        expect(existsSync(join(disk, refused))).toBe(false);
        expect(readdirSync(disk).sort()).toEqual(['.outbox', 'fill', running].sort());
        // A create of a taken id fails before anything is made: the running sandbox's directory stays.
        expect((await client.request('SandboxCreate', {}, { sandbox: sandbox(running), start: true })).error).toMatchObject({ code: 'AlreadyExists' });
        expect(existsSync(join(disk, running))).toBe(true);
        expect(await sandboxProcesses(refused)).toEqual([]);
        expect((await client.request('SandboxStatus', { sid: refused }, {})).error).toMatchObject({ code: 'NotFound' });

        const exec = await client.request('ContainerExec', { sid: running, cid: 'c' }, { args: ['echo', 'hi'] });
        expect(exec.error).toMatchObject({ code: 'ResourceExhausted', message: expect.stringMatching(/no space left on device/i) });
        expect((await client.call('SandboxStatus', { sid: running }, {})).sandbox).toMatchObject({ state: 'running' });
      } finally {
        small.free();
      }
      expect((await client.call('SandboxCreate', {}, { sandbox: sandbox(refused), start: true })).sandbox).toMatchObject({ id: refused, state: 'running' });
      small.fill();
      try {
        // Deleting needs no space, and frees what the sandbox held.
        for (const sid of [running, refused]) await client.call('SandboxDelete', { sid }, { force: true });
        expect(readdirSync(disk).sort()).toEqual(['.outbox', 'fill']);
        for (const sid of [running, refused]) expect(await sandboxProcesses(sid)).toEqual([]);
      } finally {
        small.free();
      }
    });
  }
});
