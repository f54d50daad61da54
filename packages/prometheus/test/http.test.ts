/**
 * What Prometheus does: GET /metrics over HTTP from a node:http server serving `registry.metrics()`, with
 * the registry's content type, while a real stack (memory over the test Redis) takes traffic.
 */
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { CacheStack } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { registerLayercacheMetrics } from '../src'
import { parseScrape } from './support/scrape'

let redis: TestRedis
beforeAll(async () => {
  redis = await getTestRedis()
})
afterAll(() => redis.close())

it('serves a scrape over HTTP that a Prometheus text-format reader accepts', async () => {
  const cache = new CacheStack(
    [new MemoryLayer(), new RedisLayer({ client: redis.createClient(), prefix: `${redis.keyPrefix}http:` })],
    { name: 'web' },
  )
  const registry = new Registry()
  const metrics = registerLayercacheMetrics({ registry, stacks: [cache] })
  const server = createServer((request, response) => {
    if (request.url !== '/metrics') {
      response.writeHead(404).end()
      return
    }
    registry.metrics().then(
      (body) => response.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (error: unknown) => response.writeHead(500).end(String(error)),
    )
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`

  try {
    await cache.getOrSet('page:/', async () => '<html>')
    await cache.getOrSet('page:/', async () => '<html>')
    const response = await fetch(url)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8')
    const scraped = parseScrape(await response.text())
    expect(scraped.sum('layercache_hits_total', { cache: 'web' })).toBe(1)
    expect(scraped.sum('layercache_loader_calls_total', { cache: 'web' })).toBe(1)
    expect(scraped.sum('layercache_key_index_size', { cache: 'web', layer: 'redis' })).toBe(1)
    expect(scraped.sum('layercache_loader_duration_seconds', { cache: 'web', outcome: 'ok' })).toBe(1)
  } finally {
    server.close()
    metrics.stop()
    cache.close()
  }
})
