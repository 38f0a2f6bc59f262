import { configDefaults, defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // slow (a full npm ci in a temporary directory): `npm run test:container`, see vitest.container.config.ts
    exclude: [...configDefaults.exclude, 'test/deploy/container.test.ts'],
    testTimeout: 30000,
    hookTimeout: 30000,
    pool: 'forks'
  }
})
