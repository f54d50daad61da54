import { availableParallelism } from 'node:os'
import { defineConfig } from 'vitest/config'

// scripts/test-ioredis6.mjs points this at another ioredis build (its entry file): every `ioredis` import
// of the sources and tests then loads that copy, so the same tests run against ioredis 6.
const ioredis = process.env.LAYERCACHE_TEST_IOREDIS
const sourceConditions = {
  conditions: ['@layercache/source'],
  ...(ioredis ? { alias: [{ find: /^ioredis$/, replacement: ioredis }] } : {}),
}

// Test files mostly wait (on Redis, child processes, timers): on 2 cores a file used about 0.8 of a core,
// and two at a time took 112 s where one took 191 s (layer-redis, distributed, entities, write-strategies).
// vitest's default, one file per core but one, runs them one at a time on 2 cores; so these run at least
// two at a time. The projects whose tests time heartbeats, leases and processes (distributed, layercache)
// keep vitest's default: with two at a time on 2 cores, a lease-renewal test failed once in two runs on
// a machine loaded 6 times over. LAYERCACHE_TEST_WORKERS=n sets every project (1: one file at a time).
const cores = availableParallelism()
const chosen = Number(process.env.LAYERCACHE_TEST_WORKERS) || undefined
const waiting = chosen ?? Math.max(2, cores - 1)
const timed = chosen ?? Math.max(1, cores - 1)

const project = (name: string, maxWorkers = waiting) => ({
  extends: true as const,
  test: { name, include: [`packages/${name}/test/**/*.test.ts`], maxWorkers },
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
      project('layercache', timed),
      project('test-utils'),
      project('write-strategies'),
      project('distributed', timed),
      project('entities'),
      project('opentelemetry'),
      project('prometheus'),
      project('http'),
      project('express'),
      project('fastify'),
      project('hono'),
      project('keyv'),
      project('nestjs'),
      {
        extends: true,
        test: { name: 'examples', include: ['examples/*/test/**/*.test.ts'], maxWorkers: waiting },
      },
    ],
  },
})
