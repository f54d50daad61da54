/**
 * The behaviour every framework adapter must have, run by each adapter's test file against its real
 * framework over real HTTP, with a real redis-server as L2. A harness only says how to declare routes in
 * its framework; everything asserted here is what a client sees on the wire.
 */
import { request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { CacheStack } from '@layercache/core'
import { ResponseCache, type ResponseCacheOptions } from '@layercache/http'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import type { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'

export interface TestRequest {
  readonly params: Readonly<Record<string, string>>
  header(name: string): string | undefined
}

export interface TestReply {
  readonly status?: number
  readonly headers?: Readonly<Record<string, string | string[]>>
  readonly body?: string | Uint8Array
  /** A streamed body: written chunk by chunk. */
  readonly chunks?: readonly string[]
}

export interface TestRouteCache {
  readonly ttl?: number
  readonly staleWhileRevalidate?: number
  /** Given the route params (the harness wraps it into a function of its framework's request). */
  readonly tags?: (params: Readonly<Record<string, string>>) => string[]
}

export interface TestRoute {
  readonly method?: 'GET' | 'POST'
  /** Express-style path with `:params`. */
  readonly path: string
  /** Cached when present. */
  readonly cache?: TestRouteCache
  readonly handler: (request: TestRequest) => TestReply | Promise<TestReply>
}

export interface FrameworkHarness {
  /** Framework and version, for the describe title. */
  readonly name: string
  /**
   * Whether a streamed body that ends within maxBodyBytes is stored (Hono: every body is a stream, so a
   * finite one is read and stored like any other) or passed through unstored (Express, Fastify).
   */
  readonly storesFiniteStreams: boolean
  /** Serves `routes` on 127.0.0.1 with an ephemeral port; the node:http server behind the app. */
  start(
    responses: ResponseCache,
    routes: readonly TestRoute[],
  ): Promise<{ server: Server; close(): Promise<void> }>
}

interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly body: string
  readonly bytes: Uint8Array
}

/** A promise and its resolve function. */
function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void
  const promise = new Promise<void>((resolve) => (open = resolve))
  return { promise, open }
}

export function describeConformance(harness: FrameworkHarness): void {
  describe(`HTTP response caching with ${harness.name}`, () => {
    let redis: TestRedis
    let client: Redis
    const stacks: CacheStack[] = []
    const closers: (() => Promise<void>)[] = []
    let runs = 0

    beforeAll(async () => {
      redis = await getTestRedis()
      client = redis.createClient()
    })
    afterAll(async () => {
      await redis.close()
    })
    afterEach(async () => {
      for (const close of closers.splice(0)) await close()
      for (const stack of stacks.splice(0)) stack.close()
    })

    /** A memory + Redis stack; stacks made with the same `prefix` share Redis (two instances of one app). */
    function stack(prefix = `${redis.keyPrefix}${++runs}`): CacheStack {
      const made = new CacheStack([
        new MemoryLayer({ ttl: 60_000 }),
        new RedisLayer({ client, prefix, ttl: 60_000 }),
      ])
      stacks.push(made)
      return made
    }

    async function start(
      routes: readonly TestRoute[],
      options: Partial<ResponseCacheOptions> = {},
      cache: CacheStack = stack(),
    ) {
      const responses = new ResponseCache({ cache, ttl: 60_000, ...options })
      const app = await harness.start(responses, routes)
      closers.push(() => app.close())
      const { port } = app.server.address() as AddressInfo
      const base = `http://127.0.0.1:${port}`
      // node:http rather than fetch: fetch sets Host itself, and one test needs to choose it.
      const request = (path: string, init: { method?: string; headers?: Record<string, string> } = {}) =>
        new Promise<Answer>((resolve, reject) => {
          const outgoing = httpRequest(
            `${base}${path}`,
            { method: init.method ?? 'GET', headers: init.headers },
            (incoming) => {
              const chunks: Buffer[] = []
              incoming.on('data', (chunk: Buffer) => chunks.push(chunk))
              incoming.on('error', reject)
              incoming.on('end', () => {
                const bytes = new Uint8Array(Buffer.concat(chunks))
                const headers = new Headers()
                for (const [name, value] of Object.entries(incoming.headers)) {
                  for (const one of Array.isArray(value) ? value : [value ?? '']) headers.append(name, one)
                }
                resolve({
                  status: incoming.statusCode ?? 0,
                  headers,
                  body: Buffer.from(bytes).toString(),
                  bytes,
                })
              })
            },
          )
          outgoing.on('error', reject)
          outgoing.end()
        })
      /** Resolves once `count` requests reached the server (counted on its `request` event). */
      const arrivals = (count: number) => {
        let seen = 0
        const all = gate()
        const count1 = () => {
          if (++seen === count) {
            app.server.off('request', count1)
            all.open()
          }
        }
        app.server.on('request', count1)
        return all.promise
      }
      return { responses, cache, request, arrivals }
    }

    it('stores a response on a miss and serves it on the next request, with an ETag and an Age', async () => {
      let calls = 0
      const app = await start([
        {
          path: '/items/:id',
          cache: {},
          handler: ({ params }) => ({
            headers: { 'content-type': 'application/json', 'x-made-by': 'handler' },
            body: JSON.stringify({ id: params.id, call: ++calls }),
          }),
        },
      ])
      const first = await app.request('/items/1')
      const second = await app.request('/items/1')
      expect([first.status, first.headers.get('x-cache'), first.body]).toEqual([
        200,
        'MISS',
        '{"id":"1","call":1}',
      ])
      expect([second.status, second.headers.get('x-cache'), second.body]).toEqual([200, 'HIT', first.body])
      expect(second.headers.get('content-type')).toMatch(/^application\/json/)
      expect(second.headers.get('x-made-by')).toBe('handler')
      expect(second.headers.get('etag')).toBe(first.headers.get('etag'))
      expect(first.headers.get('etag')).toMatch(/^(W\/)?"[\w-]+"$/)
      expect(Number(second.headers.get('age'))).toBeGreaterThanOrEqual(0)
      expect(Number(second.headers.get('content-length'))).toBe(second.bytes.byteLength)
      expect((await app.request('/items/2')).body).toBe('{"id":"2","call":2}')
      expect(calls).toBe(2)
    })

    it('runs the handler once for 1000 concurrent identical cold requests, and all get its response', async () => {
      let calls = 0
      const count = 1000
      let all!: Promise<void>
      const app = await start([
        {
          path: '/hot',
          cache: {},
          handler: async () => {
            calls++
            await all // every request is at the server, waiting on this one
            return { headers: { 'content-type': 'text/plain' }, body: `hot ${calls}` }
          },
        },
      ])
      all = app.arrivals(count)
      const answers = await Promise.all(Array.from({ length: count }, () => app.request('/hot')))
      expect(calls).toBe(1)
      expect(new Set(answers.map((a) => `${a.status} ${a.body} ${a.headers.get('etag')}`))).toEqual(
        new Set([`200 hot 1 ${answers[0]!.headers.get('etag')}`]),
      )
      expect(answers.filter((a) => a.headers.get('x-cache') === 'MISS')).toHaveLength(1)
      expect(answers.filter((a) => a.headers.get('x-cache') === 'HIT')).toHaveLength(count - 1)
      expect(app.cache.getStats().loaderCalls).toBe(1)
    })

    it('answers If-None-Match with a 304, also for the first request, whose handler saw no condition', async () => {
      const seen: (string | undefined)[] = []
      const app = await start([
        {
          path: '/page',
          cache: {},
          handler: ({ header }) => {
            seen.push(header('if-none-match'))
            return { headers: { etag: '"v1"', 'cache-control': 'public, max-age=5' }, body: 'version one' }
          },
        },
      ])
      const cold = await app.request('/page', { headers: { 'if-none-match': '"v1"' } })
      expect([cold.status, cold.body, cold.headers.get('etag')]).toEqual([304, '', '"v1"'])
      expect(cold.headers.get('cache-control')).toBe('public, max-age=5')
      expect(seen).toEqual([undefined])
      const full = await app.request('/page')
      expect([full.status, full.body, full.headers.get('x-cache')]).toEqual([200, 'version one', 'HIT'])
      const weak = await app.request('/page', { headers: { 'if-none-match': '"other", W/"v1"' } })
      expect([weak.status, weak.headers.get('x-cache')]).toEqual([304, 'HIT'])
      const other = await app.request('/page', { headers: { 'if-none-match': '"v0"' } })
      expect([other.status, other.body]).toEqual([200, 'version one'])
      expect(seen).toHaveLength(1)
    })

    it('lets requests with Authorization or Cookie, and other methods, bypass the cache', async () => {
      let gets = 0
      let posts = 0
      const app = await start([
        { path: '/me', cache: {}, handler: () => ({ body: `get ${++gets}` }) },
        { path: '/me', method: 'POST', handler: () => ({ body: `post ${++posts}` }) },
      ])
      const withAuth = await app.request('/me', { headers: { authorization: 'Bearer x' } })
      const withCookie = await app.request('/me', { headers: { cookie: 'session=1' } })
      expect([withAuth.body, withAuth.headers.get('x-cache')]).toEqual(['get 1', 'BYPASS'])
      expect([withCookie.body, withCookie.headers.get('x-cache')]).toEqual(['get 2', 'BYPASS'])
      await app.request('/me', { method: 'POST' })
      await app.request('/me', { method: 'POST' })
      expect(posts).toBe(2)
      // Nothing the bypassed requests produced was stored.
      expect((await app.request('/me')).headers.get('x-cache')).toBe('MISS')
      expect(gets).toBe(3)
    })

    it('does not store responses marked no-store, private, with Set-Cookie, a non-200 status, or Vary: *', async () => {
      const calls: Record<string, number> = {}
      const routes: [string, TestReply][] = [
        ['no-store', { headers: { 'cache-control': 'no-store' } }],
        ['private', { headers: { 'cache-control': 'private, max-age=60' } }],
        ['no-cache', { headers: { 'cache-control': 'no-cache' } }],
        ['zero', { headers: { 'cache-control': 's-maxage=0' } }],
        ['cookie', { headers: { 'set-cookie': 'session=abc; HttpOnly' } }],
        ['missing', { status: 404 }],
        ['failing', { status: 500 }],
        ['star', { headers: { vary: '*' } }],
      ]
      const app = await start(
        routes.map(([name, reply]) => ({
          path: `/${name}`,
          cache: {},
          handler: () => {
            calls[name] = (calls[name] ?? 0) + 1
            return { ...reply, body: `${name} ${calls[name]}` }
          },
        })),
      )
      for (const [name, reply] of routes) {
        const first = await app.request(`/${name}`)
        const second = await app.request(`/${name}`)
        expect([first.status, first.body, first.headers.get('x-cache')], name).toEqual([
          reply.status ?? 200,
          `${name} 1`,
          'PASS',
        ])
        expect([second.body, second.headers.get('x-cache')], name).toEqual([`${name} 2`, 'PASS'])
      }
      expect((await app.request('/cookie')).headers.get('set-cookie')).toBe('session=abc; HttpOnly')
    })

    it('never shares an unstorable response: the requests that waited for it run the handler themselves', async () => {
      const count = 20
      let calls = 0
      let all!: Promise<void>
      const app = await start([
        {
          path: '/session',
          cache: {},
          handler: async () => {
            const call = ++calls
            await all
            return { headers: { 'set-cookie': `session=${call}` }, body: `yours ${call}` }
          },
        },
      ])
      all = app.arrivals(count)
      const answers = await Promise.all(Array.from({ length: count }, () => app.request('/session')))
      expect(calls).toBe(count)
      expect(new Set(answers.map((a) => a.headers.get('set-cookie'))).size).toBe(count)
      for (const answer of answers) {
        expect(answer.headers.get('set-cookie')).toBe(`session=${answer.body.slice('yours '.length)}`)
        expect(answer.headers.get('x-cache')).toBe('PASS')
      }
    })

    it('keys by the request headers the response names in Vary', async () => {
      let calls = 0
      const app = await start([
        {
          path: '/greeting',
          cache: {},
          handler: ({ header }) => {
            calls++
            const fr = header('accept-language')?.startsWith('fr') === true
            return {
              headers: { vary: 'Accept-Language', 'content-language': fr ? 'fr' : 'en' },
              body: fr ? 'bonjour' : 'hello',
            }
          },
        },
      ])
      const fr = { headers: { 'accept-language': 'fr-FR' } }
      const en = { headers: { 'accept-language': 'en-GB' } }
      expect((await app.request('/greeting', en)).body).toBe('hello')
      const frFirst = await app.request('/greeting', fr)
      expect([frFirst.body, frFirst.headers.get('x-cache')]).toEqual(['bonjour', 'MISS'])
      const enAgain = await app.request('/greeting', en)
      const frAgain = await app.request('/greeting', fr)
      expect([enAgain.body, enAgain.headers.get('x-cache')]).toEqual(['hello', 'HIT'])
      expect([frAgain.body, frAgain.headers.get('x-cache')]).toEqual(['bonjour', 'HIT'])
      expect(frAgain.headers.get('vary')).toBe('Accept-Language')
      const none = await app.request('/greeting')
      expect([none.body, none.headers.get('x-cache')]).toEqual(['hello', 'MISS'])
      expect(calls).toBe(3)
    })

    it('purges the pages of a route by its tags', async () => {
      const version: Record<string, number> = { 1: 1, 2: 1 }
      const app = await start([
        {
          path: '/products/:id',
          cache: { tags: (params) => [`product:${params.id}`, 'products'] },
          handler: ({ params }) => ({ body: `product ${params.id} v${version[params.id!]}` }),
        },
      ])
      await app.request('/products/1')
      await app.request('/products/2')
      version[1] = 2
      expect((await app.request('/products/1')).body).toBe('product 1 v1')
      expect(await app.cache.invalidateByTag('product:1')).toBeGreaterThan(0)
      const one = await app.request('/products/1')
      const two = await app.request('/products/2')
      expect([one.body, one.headers.get('x-cache')]).toEqual(['product 1 v2', 'MISS'])
      expect([two.body, two.headers.get('x-cache')]).toEqual(['product 2 v1', 'HIT'])
      version[2] = 2
      await app.responses.purge('products')
      expect((await app.request('/products/2')).body).toBe('product 2 v2')
    })

    it('serves a stale page to everyone while the first request to find it stale revalidates it', async () => {
      let version = 1
      let revalidation: ReturnType<typeof gate> | undefined
      const entered = gate()
      const app = await start([
        {
          path: '/news',
          cache: { ttl: 1, staleWhileRevalidate: 60_000 },
          handler: async () => {
            if (revalidation !== undefined) {
              entered.open()
              await revalidation.promise
            }
            return { body: `news v${version}` }
          },
        },
      ])
      const first = await app.request('/news')
      expect(first.headers.get('x-cache')).toBe('MISS')
      // Its fresh lifetime is 1 ms: wait until the clock moved past it (not for background work).
      const storedAt = Date.now()
      while (Date.now() - storedAt < 3) await new Promise((resolve) => setImmediate(resolve))
      version = 2
      revalidation = gate()
      const revalidating = app.request('/news')
      await entered.promise
      const meanwhile = await app.request('/news')
      expect([meanwhile.body, meanwhile.headers.get('x-cache')]).toEqual(['news v1', 'STALE'])
      revalidation.open()
      const revalidated = await revalidating
      expect([revalidated.body, revalidated.headers.get('x-cache')]).toEqual(['news v2', 'MISS'])
      revalidation = undefined
      const after = await app.request('/news')
      expect(after.body).toBe('news v2')
    })

    it(`${harness.storesFiniteStreams ? 'stores' : 'passes through without storing'} a streamed body`, async () => {
      let calls = 0
      const app = await start([
        { path: '/stream', cache: {}, handler: () => ({ chunks: ['one,', 'two,', `call ${++calls}`] }) },
      ])
      const first = await app.request('/stream')
      const second = await app.request('/stream')
      if (harness.storesFiniteStreams) {
        expect([first.body, first.headers.get('x-cache')]).toEqual(['one,two,call 1', 'MISS'])
        expect([second.body, second.headers.get('x-cache')]).toEqual(['one,two,call 1', 'HIT'])
      } else {
        expect([first.body, first.headers.get('x-cache')]).toEqual(['one,two,call 1', 'PASS'])
        expect([second.body, second.headers.get('x-cache')]).toEqual(['one,two,call 2', 'PASS'])
      }
    })

    it('passes a body larger than maxBodyBytes on whole, without storing it', async () => {
      let calls = 0
      const big = 'x'.repeat(5000)
      const app = await start([{ path: '/big', cache: {}, handler: () => ({ body: `${big}${++calls}` }) }], {
        maxBodyBytes: 1024,
      })
      const first = await app.request('/big')
      const second = await app.request('/big')
      expect([first.body, first.headers.get('x-cache')]).toEqual([`${big}1`, 'PASS'])
      expect(second.body).toBe(`${big}2`)
    })

    it('shares stored pages between instances through Redis, binary bodies byte for byte', async () => {
      const bytes = Uint8Array.from([0, 255, 1, 254, 128, 10, 13, 0])
      let calls = 0
      const route: TestRoute = {
        path: '/logo',
        cache: {},
        handler: () => {
          calls++
          return { headers: { 'content-type': 'application/octet-stream' }, body: bytes }
        },
      }
      const prefix = `${redis.keyPrefix}shared`
      const a = await start([route], {}, stack(prefix))
      const b = await start([route], {}, stack(prefix))
      // Behind one load balancer both instances see the same Host (here they listen on different ports).
      const host = { headers: { host: 'shop.example' } }
      const fromA = await a.request('/logo', host)
      const fromB = await b.request('/logo', host)
      expect([fromA.headers.get('x-cache'), fromB.headers.get('x-cache')]).toEqual(['MISS', 'HIT'])
      expect(Array.from(fromB.bytes)).toEqual(Array.from(bytes))
      expect(fromB.headers.get('etag')).toBe(fromA.headers.get('etag'))
      expect(calls).toBe(1)
    })

    it('answers HEAD from the stored GET response', async () => {
      let calls = 0
      const app = await start([
        {
          path: '/doc',
          cache: {},
          handler: () => ({ headers: { 'content-type': 'text/plain' }, body: `doc ${++calls}` }),
        },
      ])
      await app.request('/doc')
      const head = await app.request('/doc', { method: 'HEAD' })
      expect([head.status, head.body, head.headers.get('x-cache')]).toEqual([200, '', 'HIT'])
      expect(head.headers.get('content-type')).toMatch(/^text\/plain/)
      expect(calls).toBe(1)
    })
  })
}
