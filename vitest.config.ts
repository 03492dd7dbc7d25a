import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', '{k8s,model,sources,agent,native,waypoint,bench,lab,cli,common}/**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**', 'build/**'],
    // Native addons and netns/cgroup moves want real processes, not worker threads.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    globalSetup: ['test/global-setup.ts'],
  },
});
