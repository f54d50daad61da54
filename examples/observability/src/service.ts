import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { instrumentLayercache } from '@layercache/opentelemetry'
import { registerLayercacheMetrics } from '@layercache/prometheus'
import { closeServer, listen } from '@layercache/test-utils/example-http'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import type { Redis } from 'ioredis'
import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { Registry } from 'prom-client'

export interface Product {
  readonly id: number
  readonly name: string
  readonly priceCents: number
}

/** A stand-in for a database: every read takes `readDelayMs` and is counted. */
export class SlowCatalog {
  reads = 0
  private readonly rows = new Map<number, Product>()

  constructor(private readonly readDelayMs: number) {
    for (let id = 1; id <= 50; id++) this.rows.set(id, { id, name: `Product ${id}`, priceCents: 1000 + id })
  }

  async find(id: number): Promise<Product | undefined> {
    this.reads++
    await new Promise((resolve) => setTimeout(resolve, this.readDelayMs))
    return this.rows.get(id)
  }

  update(id: number, priceCents: number): Product | undefined {
    const row = this.rows.get(id)
    if (row === undefined) return undefined
    const updated = { ...row, priceCents }
    this.rows.set(id, updated)
    return updated
  }
}

export interface CatalogServiceOptions {
  /** You own the client: the service never closes it. */
  readonly redis: Redis
  /** The RedisLayer prefix: every key the cache writes starts with it. */
  readonly cachePrefix: string
  readonly port?: number
  readonly readDelayMs?: number
}

export interface CatalogService {
  readonly url: string
  readonly cache: CacheStack
  readonly catalog: SlowCatalog
  readonly registry: Registry
  readonly spans: InMemorySpanExporter
  close(): Promise<void>
}

/**
 * The catalog service: node:http, a CacheStack of memory over Redis, and both exporters wired.
 *
 *   GET /products/:id   cache-aside (getOrSet), tagged `products`
 *   PUT /products/:id?priceCents=n   updates the row, then invalidates its key
 *   GET /metrics        Prometheus text format: the registry layercache's metrics were registered into
 *   GET /traces         the latest layercache spans, as JSON (a real service exports them with OTLP)
 */
export async function startCatalogService(options: CatalogServiceOptions): Promise<CatalogService> {
  const catalog = new SlowCatalog(options.readDelayMs ?? 5)
  const cache = new CacheStack(
    [
      new MemoryLayer({ ttl: 5_000, maxSize: 1_000 }),
      new RedisLayer({ client: options.redis, prefix: options.cachePrefix, ttl: 600_000 }),
    ],
    { name: 'catalog', ttl: 60_000 },
  )

  // Prometheus: layercache's metrics go into this service's own registry, beside its other metrics.
  const registry = new Registry()
  const metrics = registerLayercacheMetrics({ registry, stacks: [cache] })

  // OpenTelemetry: a real service sets up NodeSDK with an OTLP exporter; this one keeps spans in memory
  // so /traces can show them. Metrics go to Prometheus above, so only traces are on here.
  const spans = new InMemorySpanExporter()
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] })
  const telemetry = instrumentLayercache({ tracerProvider, metrics: false })

  const route = async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', 'http://localhost')
    if (request.method === 'GET' && url.pathname === '/metrics') {
      response.writeHead(200, { 'content-type': registry.contentType })
      response.end(await registry.metrics())
      return
    }
    if (request.method === 'GET' && url.pathname === '/traces') {
      const latest = spans.getFinishedSpans().slice(-50)
      const body = latest.map((span) => ({ name: span.name, attributes: span.attributes }))
      return json(response, 200, body)
    }
    const match = /^\/products\/(\d{1,6})$/.exec(url.pathname)
    if (match === null) return json(response, 404, { error: 'not found' })
    const id = Number(match[1])
    if (request.method === 'GET') {
      const product = await cache.getOrSet(`product:${id}`, () => catalog.find(id), { tags: ['products'] })
      return product === undefined
        ? json(response, 404, { error: `no product ${id}` })
        : json(response, 200, product)
    }
    if (request.method === 'PUT') {
      const priceCents = Number(url.searchParams.get('priceCents'))
      if (!Number.isSafeInteger(priceCents) || priceCents < 0)
        return json(response, 400, { error: 'priceCents?' })
      const product = catalog.update(id, priceCents)
      if (product === undefined) return json(response, 404, { error: `no product ${id}` })
      await cache.delete(`product:${id}`) // after the write, so no reader can cache the old row again
      return json(response, 200, product)
    }
    return json(response, 405, { error: 'method not allowed' })
  }
  const server: Server = createServer((request, response) => {
    route(request, response).catch((error: unknown) => json(response, 500, { error: String(error) }))
  })
  const url = await listen(server, options.port ?? 0)
  return {
    url,
    cache,
    catalog,
    registry,
    spans,
    async close() {
      await closeServer(server)
      telemetry.stop()
      metrics.stop()
      await tracerProvider.shutdown()
    },
  }
}

function json(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' })
  response.end(JSON.stringify(body))
}
