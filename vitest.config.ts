import { defineConfig } from 'vitest/config'

const sourceConditions = { conditions: ['@layercache/source'] }

const project = (name: string) => ({
  extends: true as const,
  test: { name, include: [`packages/${name}/test/**/*.test.ts`] },
})

export default defineConfig({
  resolve: sourceConditions,
  ssr: { resolve: { conditions: ['@layercache/source'], externalConditions: ['@layercache/source'] } },
  test: {
    testTimeout: 20_000,
    hookTimeout: 60_000,
    globalSetup: ['packages/test-utils/src/global-setup.ts'],
    projects: [
      project('core'),
      project('layer-memory'),
      project('layer-redis'),
      project('layercache'),
      project('test-utils'),
      project('write-strategies'),
      project('distributed'),
      project('entities'),
      {
        extends: true,
        test: { name: 'examples', include: ['examples/*/test/**/*.test.ts'] },
      },
    ],
  },
})
