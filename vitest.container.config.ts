import { defineConfig } from 'vitest/config'

// `npm run test:container`: the Dockerfile replayed without an engine (test/deploy/container.test.ts).
// Kept out of `npm test` because it installs the dependencies twice into temporary directories.
export default defineConfig({
  test: {
    include: ['test/deploy/container.test.ts'],
    testTimeout: 300000,
    hookTimeout: 180000,
    pool: 'forks'
  }
})
