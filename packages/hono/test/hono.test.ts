import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import type { Server } from 'node:http'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { serve } from '@hono/node-server'
import { CacheStack, InvalidOptionError, InvalidTtlError } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { type Context, Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import {
  describeConformance,
  type FrameworkHarness,
  type TestRoute,
} from '../../http/test/support/conformance'
import { cacheResponses, ResponseCache } from '../src/index'

// hono's exports map does not expose its package.json: read it from where it resolved.
const { version } = JSON.parse(
  readFileSync(join(dirname(fileURLToPath(import.meta.resolve('hono'))), '..', 'package.json'), 'utf8'),
) as { version: string }

const harness: FrameworkHarness = {
  storesFiniteStreams: true,
  name: `Hono ${version} on @hono/node-server`,
  async start(responses, routes: readonly TestRoute[]) {
    const app = new Hono()
    for (const route of routes) {
      const handler = async (c: Context) => {
        const reply = await route.handler({ params: c.req.param(), header: (name) => c.req.header(name) })
        const headers = new Headers()
        for (const [name, value] of Object.entries(reply.headers ?? {})) {
          for (const one of Array.isArray(value) ? value : [value]) headers.append(name, one)
        }
        if (reply.chunks !== undefined) {
          const encoder = new TextEncoder()
          const chunks = [...reply.chunks]
          const body = new ReadableStream<Uint8Array>({
            pull(controller) {
              const chunk = chunks.shift()
              if (chunk === undefined) controller.close()
              else controller.enqueue(encoder.encode(chunk))
            },
          })
          return new Response(body, { status: reply.status ?? 200, headers })
        }
        return new Response(reply.body ?? '', { status: reply.status ?? 200, headers })
      }
      const cache = route.cache
      const middleware =
        cache === undefined
          ? []
          : [
              cacheResponses(responses, {
                ...(cache.ttl === undefined ? {} : { ttl: cache.ttl }),
                ...(cache.staleWhileRevalidate === undefined
                  ? {}
                  : { staleWhileRevalidate: cache.staleWhileRevalidate }),
                ...(cache.tags === undefined ? {} : { tags: (c: Context) => cache.tags!(c.req.param()) }),
              }),
            ]
      if (route.method === 'POST') app.post(route.path, handler)
      else if (middleware[0] === undefined) app.get(route.path, handler)
      else app.get(route.path, middleware[0], handler)
    }
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as Server
    if (!server.listening) await once(server, 'listening')
    return {
      server,
      close: async () => {
        server.closeAllConnections()
        await new Promise((resolve) => server.close(resolve))
      },
    }
  },
}

describeConformance(harness)

describe('cacheResponses options', () => {
  const cache = new CacheStack([new MemoryLayer({ ttl: 1000 })])

  it('refuses bad route options when the route is declared', () => {
    const responses = new ResponseCache({ cache, ttl: 1000 })
    expect(() => cacheResponses(responses, { staleWhileRevalidate: 1.5 })).toThrow(InvalidTtlError)
    expect(() => cacheResponses(responses, { tags: [''] })).toThrow(InvalidOptionError)
  })

  it('refuses bad cache options', () => {
    expect(() => cacheResponses({ cache, ttl: 1000, statuses: [304] })).toThrow(InvalidOptionError)
  })
})

describe('headers set before the cache middleware', () => {
  it('go out with hits as c.body would send them; the stored headers win a clash', async () => {
    const cache = new CacheStack([new MemoryLayer({ ttl: 60_000 })])
    const app = new Hono()
    app.use(async (c, next) => {
      // As CORS middleware does: only for requests that carry an Origin, so the stored miss had none.
      const origin = c.req.header('origin')
      if (origin !== undefined) c.header('access-control-allow-origin', origin)
      c.header('x-clash', 'from the earlier middleware')
      await next()
    })
    let runs = 0
    app.get('/page', cacheResponses({ cache, ttl: 60_000 }), (c) => {
      runs++
      return c.body('page', 200, { 'content-type': 'text/plain', 'x-clash': 'stored' })
    })
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as Server
    if (!server.listening) await once(server, 'listening')
    try {
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/page`
      const seen = []
      for (const origin of [undefined, 'https://shop.example']) {
        const response = await fetch(url, { headers: origin === undefined ? {} : { origin } })
        seen.push({
          body: await response.text(),
          cache: response.headers.get('x-cache'),
          cors: response.headers.get('access-control-allow-origin'),
          clash: response.headers.get('x-clash'),
        })
      }
      expect(seen).toEqual([
        { body: 'page', cache: 'MISS', cors: null, clash: 'stored' },
        { body: 'page', cache: 'HIT', cors: 'https://shop.example', clash: 'stored' },
      ])
      expect(runs).toBe(1)
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
