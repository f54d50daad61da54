import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type CatalogService, startCatalogService } from '../src/service'
import { driveTraffic, scrape } from '../src/traffic'

let redis: TestRedis
const services: CatalogService[] = []
beforeAll(async () => {
  redis = await getTestRedis()
})
afterAll(async () => {
  for (const service of services) await service.close()
  await redis?.close()
})

/** The value of one series in Prometheus text format (labels as written), or undefined. */
function series(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue
    const labelText = line.slice(name.length + 1, line.indexOf('}'))
    const found = Object.fromEntries(
      [...labelText.matchAll(/(\w+)="([^"]*)"/g)].map((match) => [match[1], match[2]] as const),
    )
    if (Object.entries(labels).every(([key, wanted]) => found[key] === wanted)) {
      return Number(line.slice(line.lastIndexOf(' ') + 1))
    }
  }
  return undefined
}

describe('examples/observability', { timeout: 60_000 }, () => {
  it('the series on /metrics move as traffic flows, and /traces shows the spans', async () => {
    const service = await startCatalogService({
      redis: redis.createClient(),
      cachePrefix: `${redis.keyPrefix}obs${process.pid}:`,
    })
    services.push(service)
    const cache = { cache: 'catalog' }
    const before = await scrape(service.url)
    expect(series(before, 'layercache_hits_total', cache)).toBe(0)

    await driveTraffic(service.url)
    const after = await scrape(service.url)
    const reads = service.catalog.reads
    // 10 cold misses + 1 after the price change ran the loader; the rest hit memory.
    expect(reads).toBe(11)
    expect(series(after, 'layercache_loader_calls_total', cache)).toBe(reads)
    expect(series(after, 'layercache_layer_hits_total', { ...cache, layer: 'memory' })).toBeGreaterThan(150)
    expect(series(after, 'layercache_misses_total', cache)).toBeGreaterThanOrEqual(reads)
    expect(
      series(after, 'layercache_operation_duration_seconds_count', {
        ...cache,
        operation: 'getOrSet',
        outcome: 'loaded',
      }),
    ).toBe(reads)
    expect(series(after, 'layercache_loader_duration_seconds_count', { ...cache, trigger: 'miss' })).toBe(
      reads,
    )
    expect(series(after, 'layercache_key_index_size', { ...cache, layer: 'redis' })).toBe(10)

    // More traffic moves the same series further.
    await fetch(`${service.url}/products/2`)
    const later = await scrape(service.url)
    expect(series(later, 'layercache_layer_hits_total', { ...cache, layer: 'memory' })).toBe(
      series(after, 'layercache_layer_hits_total', { ...cache, layer: 'memory' })! + 1,
    )

    const traces = (await (await fetch(`${service.url}/traces`)).json()) as {
      name: string
      attributes: Record<string, unknown>
    }[]
    expect(traces.some((span) => span.name === 'layercache.load')).toBe(true)
    expect(
      traces.some(
        (span) => span.name === 'layercache.getOrSet' && span.attributes['layercache.layer'] === 'memory',
      ),
    ).toBe(true)
    expect(traces.some((span) => span.name === 'layercache.delete')).toBe(true)
  })
})
