import { once } from 'node:events'
import type { Server } from 'node:http'
import { CacheStack, InvalidOptionError, InvalidTtlError } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import express, { type Request } from 'express'
import { describe, expect, it } from 'vitest'
import {
  describeConformance,
  type FrameworkHarness,
  type TestRoute,
} from '../../http/test/support/conformance'
import { cacheResponses, ResponseCache } from '../src/index'

const { version } = (await import('express/package.json', { with: { type: 'json' } })).default

const harness: FrameworkHarness = {
  storesFiniteStreams: false,
  name: `Express ${version}`,
  async start(responses, routes: readonly TestRoute[]) {
    const app = express()
    for (const route of routes) {
      const handler = async (req: Request, res: express.Response) => {
        const reply = await route.handler({
          params: req.params as Record<string, string>,
          header: (name) => req.get(name),
        })
        res.status(reply.status ?? 200)
        for (const [name, value] of Object.entries(reply.headers ?? {})) res.setHeader(name, value)
        if (reply.chunks !== undefined) {
          for (const chunk of reply.chunks) res.write(chunk)
          res.end()
        } else res.send(typeof reply.body === 'string' ? reply.body : Buffer.from(reply.body ?? ''))
      }
      const cache = route.cache
      const middleware =
        cache === undefined
          ? []
          : [
              cacheResponses<Request>(responses, {
                ...(cache.ttl === undefined ? {} : { ttl: cache.ttl }),
                ...(cache.staleWhileRevalidate === undefined
                  ? {}
                  : { staleWhileRevalidate: cache.staleWhileRevalidate }),
                ...(cache.tags === undefined
                  ? {}
                  : { tags: (req) => cache.tags!(req.params as Record<string, string>) }),
              }),
            ]
      if (route.method === 'POST') app.post(route.path, ...middleware, handler)
      else app.get(route.path, ...middleware, handler)
    }
    const server: Server = app.listen({ port: 0, host: '127.0.0.1', backlog: 2048 })
    await once(server, 'listening')
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
    expect(() => cacheResponses(responses, { ttl: -1 })).toThrow(InvalidTtlError)
    expect(() => cacheResponses(responses, { tags: 'products' as unknown as string[] })).toThrow(
      InvalidOptionError,
    )
    expect(() => cacheResponses(responses, { ttl: 5, color: 'red' } as never)).toThrow(InvalidOptionError)
  })

  it('refuses bad cache options', () => {
    expect(() => cacheResponses({ cache, ttl: 0 })).toThrow(InvalidTtlError)
  })
})
