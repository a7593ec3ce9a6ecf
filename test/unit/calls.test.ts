// The deadline helpers every guest call goes through (actors/agents/calls.ts).
import { describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { AGENT_CALL_TIMEOUTS_MS, stopWithGrace, waitAtMost, withinDeadline } from '../../actors/agents/calls.js';
import { AgentActor, callTimeoutMs } from '../../actors/agents/agent-actor.js';
import { NoopAgent } from '../../actors/agents/noop.js';
import { ErrorCode, unavailable } from '../../bus/errors.js';

const never = () => new Promise<never>(() => {});

describe('withinDeadline', () => {
  it('rejects with DeadlineExceeded and aborts the work when the time limit passes', async () => {
    let seen: AbortSignal | undefined;
    const err = await withinDeadline({ what: 'slow call', timeoutMs: 20 }, (signal) => {
      seen = signal;
      return never();
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.DeadlineExceeded, message: 'slow call did not finish within 20 ms' });
    expect(seen?.aborted).toBe(true);
  });

  it("ends at once with the caller's reason when the caller's signal aborts", async () => {
    const caller = new AbortController();
    let seen: AbortSignal | undefined;
    const pending = withinDeadline({ what: 'call', signal: caller.signal }, (signal) => {
      seen = signal;
      return never();
    });
    caller.abort(unavailable('the host is stopping'));
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.Unavailable, message: 'the host is stopping' });
    expect(seen?.aborted).toBe(true);
  });

  it('maps an AbortSignal.timeout to DeadlineExceeded and keeps the value of work that finishes in time', async () => {
    await expect(withinDeadline({ what: 'call', signal: AbortSignal.timeout(10) }, never)).rejects.toMatchObject({ code: ErrorCode.DeadlineExceeded });
    await expect(withinDeadline({ what: 'call', timeoutMs: 1000 }, async () => 42)).resolves.toBe(42);
  });
});

describe('waitAtMost and stopWithGrace', () => {
  it('waitAtMost gives undefined after the time, the value before it, and waits forever on Infinity', async () => {
    expect(await waitAtMost(never(), 10)).toBeUndefined();
    expect(await waitAtMost(sleep(5).then(() => 'done'), 1000)).toBe('done');
    expect(await waitAtMost(sleep(30).then(() => 'late'), Infinity)).toBe('late');
  });

  it('asks politely, insists after the grace period, and gives up after the kill wait', async () => {
    const steps: string[] = [];
    let exit!: (status: number) => void;
    const exited = new Promise<number>((r) => (exit = r));
    const status = await stopWithGrace({
      what: 'container c1',
      terminate: async () => void steps.push('TERM'),
      kill: async () => {
        steps.push('KILL');
        setTimeout(() => exit(137), 5);
      },
      exited,
      graceMs: 20,
      killWaitMs: 1000,
    });
    expect({ steps, status }).toEqual({ steps: ['TERM', 'KILL'], status: 137 });
    const stuck = await stopWithGrace({ what: 'container c2', terminate: async () => {}, kill: async () => {}, exited: never(), graceMs: 5, killWaitMs: 5 }).catch((e: unknown) => e);
    expect(stuck).toMatchObject({ code: ErrorCode.DeadlineExceeded, message: 'container c2 did not exit within 5 ms of SIGKILL' });
  });
});

describe('call time limits', () => {
  it("takes the operation's default, or the command's deadline when it is nearer", () => {
    const now = 1_000_000;
    expect(callTimeoutMs('startContainer', undefined, now)).toBe(AGENT_CALL_TIMEOUTS_MS.startContainer);
    expect(callTimeoutMs('startContainer', now + 500, now)).toBe(500);
    expect(callTimeoutMs('waitProcess', undefined, now)).toBeUndefined();
    expect(callTimeoutMs('waitProcess', now + 700, now)).toBe(700);
    expect(callTimeoutMs('exec', now - 5, now)).toBe(0);
  });
});

describe('the agent actor after its end', () => {
  it('takes a late connection loss, after the agent was marked dead or released, without a send to a stopped actor', async () => {
    const warnings: unknown[][] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => void warnings.push(args);
    try {
      const dead = new AgentActor(new NoopAgent(), 's1');
      dead.markDead('the guest exited');
      dead.connectionLost('the guest closed the tty connection');
      dead.markDead('again');
      expect(dead.isDead()).toBe(true);
      await expect(dead.call('check', (a) => a.check())).rejects.toMatchObject({ code: ErrorCode.Unavailable, message: expect.stringContaining('the guest exited') });

      const released = new AgentActor(new NoopAgent(), 's2');
      released.markDead('x');
      await released.release();
      released.connectionLost('late');
      released.markDead('later');
    } finally {
      console.warn = warn;
    }
    expect(warnings).toEqual([]);
  });
});
