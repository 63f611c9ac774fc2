import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Each run's temporary files live in one directory, removed when the run ends.
    globalSetup: ['test/support/run-tmpdir.ts'],
  },
});
