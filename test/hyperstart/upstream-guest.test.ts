// Against a guest that speaks only upstream hyperstart (our guest with --upstream-only,
// which refuses the virtactors extension codes as a stock hyperstart does): ps falls
// back to running `ps` as an exec in the container, and pause says it is not there.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, VcError } from '../../bus/errors.js';
import { containerSpec, setupDriver, startGuest, type DriverSetup, type GuestProcess } from './harness.js';

let setup: DriverSetup;
let guest: GuestProcess;

beforeEach(async () => {
  setup = await setupDriver({ callTimeoutMs: 10_000 }, { stopGraceMs: 2_000 });
  guest = await startGuest(setup.agent, ['--upstream-only']);
  await setup.agent.startSandbox({});
  await setup.agent.createContainer(containerSpec('box', ['sleep', '37']));
  await setup.agent.startContainer('box');
});

afterEach(async () => {
  await guest.kill();
  await setup.cleanup();
});

describe('a guest with only the upstream hyperstart commands', () => {
  it('lists processes with ps run as an exec in the container, as a table and as json', async () => {
    const table = Buffer.from(await setup.agent.processListContainer('box', { format: 'table', args: ['-o', 'pid,args'] })).toString('utf8');
    const lines = table.trim().split('\n');
    expect(lines[0]).toMatch(/PID\s+COMMAND/);
    const sleeper = lines.find((l) => l.trimEnd().endsWith('sleep 37'));
    expect(sleeper).toBeDefined();
    // The ps exec itself is left out of the answer.
    expect(lines.some((l) => l.trimEnd().endsWith('ps -o pid,args'))).toBe(false);

    const pids = JSON.parse(Buffer.from(await setup.agent.processListContainer('box', { format: 'json', args: [] })).toString('utf8')) as number[];
    expect(pids).toContain(Number.parseInt(sleeper!.trim(), 10));
    // The internal exec is not reported as a user's process.
    expect(setup.rec.exits.filter((e) => e.execId.startsWith('vc-ps-'))).toEqual([]);
  });

  it('kill with all signals the init process and every exec, one by one', async () => {
    await setup.agent.exec('box', { args: ['sleep', '38'], env: [], cwd: '', user: '', terminal: false }, 'side');
    await setup.agent.killContainer('box', 15, true);
    expect((await setup.exited('box', 'box')).exitStatus).toBe(143);
    expect((await setup.exited('box', 'side')).exitStatus).toBe(143);
  });

  it('refuses pause with FailedPrecondition naming upstream hyperstart', async () => {
    const err = await setup.agent.pauseContainer('box').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VcError);
    expect((err as VcError).code).toBe(ErrorCode.FailedPrecondition);
    expect((err as VcError).message).toMatch(/upstream hyperstart has no such command/);
  });
});
