// The monitor statechart under a controlled check: one report per failure, the right
// reason, nothing while checks pass, and silence once stopped.
import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, setup } from 'xstate';
import { monitorMachine, type CheckFailure } from '../../machines/monitor.js';

/** A stand-in parent that records what the monitor reports. */
function harness(check: () => Promise<void>) {
  const reports: unknown[] = [];
  const parent = setup({
    actors: { monitor: monitorMachine.provide({ actors: { checkAgent: fromPromise(check) } }) },
  }).createMachine({
    initial: 'running',
    states: {
      running: {
        invoke: { id: 'm', src: 'monitor', input: { sandboxId: 's', intervalMs: 5, deadlineMs: 50 } },
        on: { GUEST_FAILED: { actions: ({ event }) => reports.push(event) }, STOP: 'stopped' },
      },
      stopped: {},
    },
  });
  const actor = createActor(parent).start();
  return { actor, reports };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('monitor', () => {
  it('checks every interval and reports nothing while the agent answers', async () => {
    let checks = 0;
    const { actor, reports } = harness(async () => {
      checks++;
    });
    await sleep(200);
    actor.stop();
    expect(checks).toBeGreaterThan(5);
    expect(reports).toEqual([]);
  });

  it('reports the first failure once, with its reason, and stops checking', async () => {
    let checks = 0;
    const failure: CheckFailure = { reason: 'check-timeout', message: 'no answer within 50 ms', at: '2026-01-01T00:00:00.000Z' };
    const { actor, reports } = harness(async () => {
      checks++;
      if (checks >= 3) throw failure;
    });
    await sleep(200);
    expect(reports).toEqual([{ type: 'GUEST_FAILED', ...failure }]);
    expect(checks).toBe(3);
    actor.stop();
  });

  it('stops with the state that invoked it', async () => {
    let checks = 0;
    const { actor, reports } = harness(async () => {
      checks++;
    });
    await sleep(30);
    actor.send({ type: 'STOP' });
    const after = checks;
    await sleep(60);
    expect(checks).toBe(after);
    expect(reports).toEqual([]);
    actor.stop();
  });
});
