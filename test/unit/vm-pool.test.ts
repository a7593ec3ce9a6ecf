// The warm pool's refill (actors/backends/vm/pool.ts), with stand-in VMs for its boots (the
// pool is the unit here; real VMs are test/vm's): a taken VM is replaced only once the
// sandbox that took it says it is set up, so that the next boot does not compete with it.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { VmPool } from '../../actors/backends/vm/pool.js';
import type { Vm, VmConfig } from '../../actors/backends/vm/vm.js';

const tick = () => new Promise((r) => setImmediate(r));

function standIn(config: VmConfig): Vm {
  return { config, exit: undefined, pid: undefined, onExit() {}, destroy: async () => {} } as unknown as Vm;
}

describe('vm pool refill', () => {
  it('boots the replacement of a taken VM once its taker has settled, and shows it booting then', async () => {
    const boots: VmConfig[] = [];
    const pool = new VmPool(
      { kata: 1 },
      (agent) => ({ agent, shareTag: 'kataShared', memoryMiB: 64, cpus: 1 }),
      async (config) => {
        boots.push(config);
        return standIn(config);
      },
      pino({ level: 'silent' }),
    );
    pool.fill();
    while (pool.status().ready < 1) await tick();
    expect(boots).toHaveLength(1);

    let settle!: () => void;
    const settled = new Promise<void>((r) => (settle = r));
    expect(pool.take('kata', 'kataShared', settled)).toBeDefined();
    for (let i = 0; i < 5; i++) await tick();
    expect(boots).toHaveLength(1);
    expect(pool.status()).toMatchObject({ size: 1, ready: 0, booting: 0, taken: 1 });

    settle();
    while (boots.length < 2) await tick();
    expect(pool.status().ready + pool.status().booting).toBe(1);
    while (pool.status().ready < 1) await tick();
    expect(pool.status()).toMatchObject({ ready: 1, booting: 0, taken: 1 });
    await pool.close();
  });

  it('a take with no taker to wait for refills at once', async () => {
    let boots = 0;
    const pool = new VmPool(
      { kata: 1 },
      (agent) => ({ agent, shareTag: 'kataShared', memoryMiB: 64, cpus: 1 }),
      async (config) => {
        boots++;
        return standIn(config);
      },
      pino({ level: 'silent' }),
    );
    pool.fill();
    while (pool.status().ready < 1) await tick();
    expect(pool.take('kata', 'kataShared')).toBeDefined();
    while (boots < 2) await tick();
    expect(boots).toBe(2);
    await pool.close();
  });
});
