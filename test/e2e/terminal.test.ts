// Terminals over the bus, for every agent with a real guest: a process started with a
// terminal and a consoleSize runs at that size from its first instruction, and
// ContainerResize reaches its terminal in the guest (the process sees SIGWINCH and the new
// size), for the init process and for an exec; a process without a terminal is refused
// with FailedPrecondition (the guests refuse it too: test/kata/driver.test.ts and
// test/hyperstart/guest.test.ts).
import { describe, expect, it } from 'vitest';
import { CommandError } from '../../bus/client.js';
import { useRuntime } from '../helpers/runtime.js';
import { GUEST_AGENTS } from './agents.js';

const rt = useRuntime({ host: 'e2e-tty' });
const ok = rt.ok;

/** Prints its size at the start and on every SIGWINCH, until it is killed. */
const WATCH_SIZE = ['sh', '-c', "trap 'echo size=$(stty size)' WINCH; echo start=$(stty size); while :; do sleep 1; done"];

const refusal = (p: Promise<unknown>) => p.then(() => undefined, (err: unknown) => err as CommandError);

for (const agent of GUEST_AGENTS) {
  describe(`terminals, ${agent} agent`, { timeout: 120_000 }, () => {
    const sid = `tty-${agent}`;

    it('starts the init process at its consoleSize, and ContainerResize reaches its terminal', async () => {
      await ok('SandboxCreate', {}, {
        sandbox: { id: sid, agent, backend: 'namespace', containers: [{ id: 'c', args: WATCH_SIZE, terminal: true, consoleSize: { rows: 20, cols: 70 } }] },
        start: true,
      });
      const out = async () => (await ok('ContainerLogs', { sid, cid: 'c' })).stdout ?? '';
      await expect.poll(out, { timeout: 60_000 }).toContain('start=20 70\r\n');
      await ok('ContainerResize', { sid, cid: 'c' }, { rows: 33, cols: 101 });
      await expect.poll(out, { timeout: 60_000 }).toContain('size=33 101\r\n');
    });

    it('starts an exec at its consoleSize and resizes it by its exec id', async () => {
      const { execId } = await ok('ContainerExec', { sid, cid: 'c' }, { args: WATCH_SIZE, terminal: true, consoleSize: { rows: 25, cols: 81 } });
      const out = async () => (await ok('ContainerLogs', { sid, cid: 'c' }, { execId })).stdout ?? '';
      await expect.poll(out, { timeout: 60_000 }).toContain('start=25 81\r\n');
      await ok('ContainerResize', { sid, cid: 'c' }, { execId, rows: 12, cols: 200 });
      await expect.poll(out, { timeout: 60_000 }).toContain('size=12 200\r\n');
      // The init process's terminal is its own: still the size it was given.
      expect((await ok('ContainerLogs', { sid, cid: 'c' })).stdout).not.toContain('size=12 200');
    });

    it('refuses a resize of a process without a terminal with FailedPrecondition', async () => {
      const { execId } = await ok('ContainerExec', { sid, cid: 'c' }, { args: ['sleep', '600'] });
      const err = await refusal(ok('ContainerResize', { sid, cid: 'c' }, { execId, rows: 24, cols: 80 }));
      expect(err).toMatchObject({ code: 'FailedPrecondition', message: expect.stringMatching(/was started without a terminal/) });
      await ok('SandboxDelete', { sid }, { force: true });
    });
  });
}
