import { Readable } from 'node:stream'
import { CacheStack, InvalidTtlError } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import Fastify, { type FastifyRequest } from 'fastify'
import { describe, expect, it } from 'vitest'
import {
  describeConformance,
  type FrameworkHarness,
  type TestRoute,
} from '../../http/test/support/conformance'
import { fastifyResponseCache, ResponseCache } from '../src/index'

const { version } = (await import('fastify/package.json', { with: { type: 'json' } })).default

const params = (request: FastifyRequest) => request.params as Record<string, string>

const harness: FrameworkHarness = {
  storesFiniteStreams: false,
  name: `Fastify ${version}`,
  async start(responses, routes: readonly TestRoute[]) {
    const app = Fastify()
    await app.register(fastifyResponseCache, { responses })
    for (const route of routes) {
      const cache = route.cache
      app.route({
        method: route.method ?? 'GET',
        url: route.path,
        config:
          cache === undefined
            ? {}
            : {
                cache: {
                  ...(cache.ttl === undefined ? {} : { ttl: cache.ttl }),
                  ...(cache.staleWhileRevalidate === undefined
                    ? {}
                    : { staleWhileRevalidate: cache.staleWhileRevalidate }),
                  ...(cache.tags === undefined
                    ? {}
                    : { tags: (request: FastifyRequest) => cache.tags!(params(request)) }),
                },
              },
        handler: async (request, reply) => {
          const answer = await route.handler({
            params: params(request),
            header: (name) => {
              const value = request.headers[name]
              return Array.isArray(value) ? value.join(', ') : value
            },
          })
          reply.code(answer.status ?? 200)
          for (const [name, value] of Object.entries(answer.headers ?? {})) reply.header(name, value)
          if (answer.chunks !== undefined) return reply.send(Readable.from(answer.chunks))
          return reply.send(typeof answer.body === 'string' ? answer.body : Buffer.from(answer.body ?? ''))
        },
      })
    }
    await app.listen({ port: 0, host: '127.0.0.1', backlog: 2048 })
    return { server: app.server, close: () => app.close() }
  },
}

describeConformance(harness)

describe('fastifyResponseCache options', () => {
  const cache = new CacheStack([new MemoryLayer({ ttl: 1000 })])

  it('refuses a route with bad cache options when it is declared', async () => {
    const app = Fastify()
    await app.register(fastifyResponseCache, { responses: new ResponseCache({ cache, ttl: 1000 }) })
    expect(() => app.get('/bad', { config: { cache: { ttl: -1 } } }, async () => 'x')).toThrow(
      InvalidTtlError,
    )
    await app.close()
  })

  it('caches only marked routes, or every GET route with allRoutes unless one opts out', async () => {
    let calls = 0
    const app = Fastify()
    await app.register(fastifyResponseCache, { responses: { cache, ttl: 1000 }, allRoutes: true })
    app.get('/all', async () => `all ${++calls}`)
    app.get('/out', { config: { cache: false } }, async () => `out ${++calls}`)
    const all = [await app.inject('/all'), await app.inject('/all')]
    const out = [await app.inject('/out'), await app.inject('/out')]
    expect(all.map((r) => [r.body, r.headers['x-cache']])).toEqual([
      ['all 1', 'MISS'],
      ['all 1', 'HIT'],
    ])
    expect(out.map((r) => [r.body, r.headers['x-cache']])).toEqual([
      ['out 2', undefined],
      ['out 3', undefined],
    ])
    await app.close()
  })
})
