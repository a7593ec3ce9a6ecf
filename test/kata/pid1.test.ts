// The kata guest agent as PID 1 of its own pid namespace, as the namespace backend runs
// it: orphans are reparented to PID 1, and Node reaps only its own children. Containers
// run through the OCI runtime have a pid namespace of their own whose init (tini) reaps
// them; without an OCI runtime (--oci none) the agent runs processes in a nested namespace
// whose PID 1 reaps everything.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { descendants, eventually, readAll, run, startGuest, type Guest } from './helpers.js';

const T = 5000;
const REAPER_SLEEP = 'sleep 2147483647';

/** A PID 1 guest with a sandbox, for one describe block. */
function pid1Guest(flags: string[]): { guest: () => Guest } {
  let guest: Guest;
  beforeAll(async () => {
    guest = await startGuest({ pid1: true, flags });
    await guest.conn.call('CreateSandbox', { hostname: 'pid1', sandbox_id: 'pid1' }, T);
  });
  afterAll(async () => {
    const agent = guest.pid;
    await guest.stop();
    expect(await eventually(() => descendants(agent).length === 0)).toBe(true);
  });
  return { guest: () => guest };
}

/** An orphan ends with its container's init (its pid namespace goes with it), its stdout closes, and no zombie is left. */
async function orphanEndsWithItsContainer(guest: Guest): Promise<void> {
  const conn = guest.conn;
  await run(conn, 'parent', ['sh', '-c', 'sleep 30 & echo orphan $!; exit 0']);
  expect((await conn.call('WaitProcess', { container_id: 'parent', exec_id: 'parent' })).response.status).toBe(0);
  expect(await readAll(conn, 'parent', 'parent')).toMatch(/^orphan \d+\n$/);
  expect(await eventually(() => !descendants(guest.pid).some((p) => p.cmdline === 'sleep 30'))).toBe(true);
  expect(descendants(guest.pid).filter((p) => p.state === 'Z')).toEqual([]);
  await conn.call('RemoveContainer', { container_id: 'parent', timeout: 0 }, T);
}

describe('kata guest agent as PID 1', () => {
  const { guest } = pid1Guest([]);

  it('reaps an orphaned grandchild: no zombie lingers', () => orphanEndsWithItsContainer(guest()));

  it('keeps exit statuses and signals: SIGTERM to sleep gives 143', async () => {
    const conn = guest().conn;
    const pid = await run(conn, 'sleeper', ['sleep', '60']);
    const json = await conn.call('ListProcesses', { container_id: 'sleeper', format: 'json' }, T);
    expect(JSON.parse(Buffer.from(json.response.process_list!).toString())).toEqual([pid]);
    await conn.call('SignalProcess', { container_id: 'sleeper', exec_id: 'sleeper', signal: 15 }, T);
    expect((await conn.call('WaitProcess', { container_id: 'sleeper', exec_id: 'sleeper' })).response.status).toBe(143);
    await conn.call('RemoveContainer', { container_id: 'sleeper', timeout: 0 }, T);
  });
});

describe('kata guest agent as PID 1 without an OCI runtime', () => {
  const { guest } = pid1Guest(['--oci', 'none']);

  it('reaps an orphaned grandchild in its reaping namespace', () => orphanEndsWithItsContainer(guest()));

  it('ends the reaping namespace with the sandbox', async () => {
    const conn = guest().conn;
    await run(conn, 'last', ['sleep', '60']);
    expect(descendants(guest().pid).some((p) => p.cmdline === REAPER_SLEEP)).toBe(true);
    await conn.call('DestroySandbox', {}, T);
    expect(await eventually(() => descendants(guest().pid).length === 0)).toBe(true);
    await conn.call('CreateSandbox', { hostname: 'again', sandbox_id: 'again' }, T);
  });
});

describe('kata guest agent as PID 1 without an OCI runtime and without the reaper', () => {
  let guest: Guest;
  beforeAll(async () => {
    guest = await startGuest({ pid1: true, flags: ['--reaper', 'off', '--oci', 'none'] });
    await guest.conn.call('CreateSandbox', { hostname: 'noreap', sandbox_id: 'noreap' }, T);
  });
  afterAll(() => guest?.stop());

  it('leaves the zombie the reaper exists for', async () => {
    await run(guest.conn, 'parent', ['sh', '-c', 'sleep 0.2 & exit 0']);
    expect((await guest.conn.call('WaitProcess', { container_id: 'parent', exec_id: 'parent' })).response.status).toBe(0);
    await readAll(guest.conn, 'parent', 'parent');
    expect(await eventually(() => descendants(guest.pid).some((p) => p.state === 'Z' && p.ppid === guest.pid))).toBe(true);
  });
});
