// The app of the HTTP middleware benchmark, in its own process so the load generator does not share its
// event loop: one framework (Express, Fastify or Hono on @hono/node-server) serving the same body at
// `/static` (a plain handler) and at `/cached` (the same handler behind layercache's middleware, memory
// over Redis). `start` returns the port; `handlerCalls` tells whether the cached route ever ran again.
import { once } from 'node:events'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { cacheResponses as expressCache } from '@layercache/express'
import { fastifyResponseCache } from '@layercache/fastify'
import { cacheResponses as honoCache } from '@layercache/hono'
import { ResponseCache } from '@layercache/http'
import { serveWorker } from '@layercache/test-utils/worker-process'
import express from 'express'
import Fastify from 'fastify'
import { Hono } from 'hono'
import { Redis } from 'ioredis'
import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'

export type Framework = 'express' | 'fastify' | 'hono'

export interface HttpServerInit {
  readonly url: string
  readonly prefix: string
  readonly framework: Framework
  readonly body: string
}

const api = async (init: HttpServerInit) => {
  const client = new Redis(init.url)
  const cache = new CacheStack([
    new MemoryLayer({ ttl: 600_000 }),
    new RedisLayer({ client, prefix: `${init.prefix}${init.framework}:` }),
  ])
  const responses = new ResponseCache({ cache, ttl: 600_000 })
  const type = 'application/json; charset=utf-8'
  let handlerCalls = 0
  let server: Server
  let closeApp: () => Promise<void>
  if (init.framework === 'express') {
    const app = express()
    app.get('/static', (_req, res) => {
      res.type(type).send(init.body)
    })
    app.get('/cached', expressCache(responses), (_req, res) => {
      handlerCalls++
      res.type(type).send(init.body)
    })
    server = app.listen({ port: 0, host: '127.0.0.1' })
    await once(server, 'listening')
    closeApp = () => new Promise((resolve) => server.close(() => resolve()))
  } else if (init.framework === 'fastify') {
    const app = Fastify()
    await app.register(fastifyResponseCache, { responses })
    app.get('/static', async (_request, reply) => reply.type(type).send(init.body))
    app.get('/cached', { config: { cache: true } }, async (_request, reply) => {
      handlerCalls++
      return reply.type(type).send(init.body)
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    server = app.server
    closeApp = () => app.close()
  } else {
    const app = new Hono()
    app.get('/static', (c) => c.body(init.body, 200, { 'content-type': type }))
    app.get('/cached', honoCache(responses), (c) => {
      handlerCalls++
      return c.body(init.body, 200, { 'content-type': type })
    })
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as Server
    if (!server.listening) await once(server, 'listening')
    closeApp = () => new Promise((resolve) => server.close(() => resolve()))
  }
  return {
    port: () => (server.address() as AddressInfo).port,
    handlerCalls: () => handlerCalls,
    async close() {
      server.closeAllConnections()
      await closeApp()
      cache.close()
      client.disconnect()
    },
  }
}

export type HttpServerApi = Awaited<ReturnType<typeof api>>

serveWorker(api)
