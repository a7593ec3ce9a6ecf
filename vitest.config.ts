import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Suites start their own nats-server and guests; two workers match the 2-core target.
    pool: 'forks',
    maxWorkers: 2,
    fileParallelism: true,
  },
});
