/**
 * # examples/observability: Prometheus metrics and OpenTelemetry spans of a cached HTTP service
 *
 * A catalog service on node:http with a CacheStack of memory (L1) over Redis (L2) in front of a slow
 * "database", and both exporters wired: @layercache/prometheus registers layercache's metrics into the
 * service's prom-client registry (served on /metrics), @layercache/opentelemetry turns every cache call
 * into a span (kept in memory and shown on /traces here; a real service exports them with OTLP).
 *
 * Run it (from the repository root):
 *
 *   pnpm --filter @layercache/example-observability start   # traffic, then the series it moved
 *   pnpm --filter @layercache/example-observability serve   # keeps running for curl; Ctrl-C stops
 *
 * Redis: REDIS_URL, else a throwaway redis-server of its own. PORT picks the port of `serve`.
 *
 * Files: src/service.ts (the routes, the cache and the wiring of both exporters), src/traffic.ts (the
 * client), test/observability.test.ts (scrapes /metrics over HTTP and checks the series move).
 */
import { connectRedis } from '@layercache/test-utils/example-redis'
import { startCatalogService } from './service'
import { driveTraffic, scrape } from './traffic'

const redis = await connectRedis()
if (redis.client === undefined) {
  console.error(`This example needs Redis for its second layer: ${redis.description}. Set REDIS_URL.`)
  process.exit(1)
}
console.log(`Using ${redis.description}.`)
const cachePrefix = `example-observability-${process.pid}-${Date.now().toString(36)}:`
redis.removeOnClose(cachePrefix)
const service = await startCatalogService({
  redis: redis.client,
  cachePrefix,
  port: Number(process.env.PORT ?? 0),
})
console.log(`The catalog service listens on ${service.url} (/products/:id, /metrics, /traces).`)

let cleaning: Promise<void> | undefined
const cleanUp = () => {
  cleaning ??= service.close().then(() => redis.close())
  return cleaning
}

if (process.argv.includes('--serve')) {
  console.log(`Try:
  curl ${service.url}/products/1
  curl -X PUT '${service.url}/products/1?priceCents=999'
  curl ${service.url}/metrics | grep '^layercache_'
  curl ${service.url}/traces
Ctrl-C stops the service.`)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      cleanUp().finally(() => process.exit(0))
    })
  }
} else {
  try {
    const summary = await driveTraffic(service.url)
    console.log(`\nSent ${summary.requests} requests (${summary.products} products, one price change).`)
    console.log(`The database answered ${service.catalog.reads} reads.\n`)
    const text = await scrape(service.url)
    console.log('From /metrics:')
    for (const line of text.split('\n')) {
      if (
        /^layercache_(hits|misses)_total|^layercache_layer_hits_total|^layercache_loader_calls_total|^layercache_operation_duration_seconds_count/.test(
          line,
        )
      ) {
        console.log(`  ${line}`)
      }
    }
    const traces = (await (await fetch(`${service.url}/traces`)).json()) as {
      name: string
      attributes: object
    }[]
    const load = traces.find(
      (span) => span.name === 'layercache.getOrSet' && 'layercache.loaded' in span.attributes,
    )
    console.log('\nA getOrSet span from /traces (a miss that ran the loader):')
    console.log(`  ${JSON.stringify(load)}`)
  } finally {
    await cleanUp()
  }
}
