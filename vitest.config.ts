import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Suites start their own nats-server and guests; two workers match the 2-core target.
    pool: 'forks',
    maxWorkers: 2,
    fileParallelism: true,
    projects: [
      { extends: true, test: { name: 'suite', include: ['test/**/*.test.ts'], exclude: ['test/vm/**'], sequence: { groupOrder: 0 } } },
      // The VM suites run after the others, never beside them: a TCG guest keeps a core
      // busy, and timing-sensitive suites (the monitor's) would pay for it.
      { extends: true, test: { name: 'vm', include: ['test/vm/**/*.test.ts'], sequence: { groupOrder: 1 } } },
    ],
  },
});
