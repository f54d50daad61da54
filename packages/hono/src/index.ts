import {
  type CacheRequest,
  ResponseCache,
  type ResponseCacheOptions,
  type RouteCacheOptions,
  routeSettingsOf,
} from '@layercache/http'
import type { Context, Env, MiddlewareHandler } from 'hono'

export {
  type CacheStatus,
  defaultBypass,
  ResponseCache,
  type ResponseCacheOptions,
  type RouteCacheOptions,
} from '@layercache/http'

/** Node's request under @hono/node-server, whose plain headers object costs nothing to read. */
interface NodeBindings {
  readonly incoming?: {
    readonly url?: string
    readonly headers: Record<string, string | string[] | undefined>
  }
}

/**
 * The request as the cache reads it. On @hono/node-server from Node's own request (reading `c.req.raw`'s
 * headers there builds a Headers object on every request); elsewhere from the fetch Request, with host,
 * path and query split off `c.req.url` without a URL parse.
 */
class HonoCacheRequest implements CacheRequest {
  readonly host: string | undefined
  readonly url: string
  readonly #incoming: NodeBindings['incoming']

  constructor(private readonly context: Context) {
    const incoming = (context.env as NodeBindings | undefined)?.incoming
    if (incoming?.url !== undefined) {
      this.#incoming = incoming
      const host = incoming.headers.host
      this.host = Array.isArray(host) ? host[0] : host
      this.url = incoming.url
      return
    }
    const full = context.req.url
    const authority = full.indexOf('://') + 3
    const path = full.indexOf('/', authority)
    this.host = path === -1 ? full.slice(authority) : full.slice(authority, path)
    this.url = path === -1 ? '/' : full.slice(path)
  }

  get method(): string {
    // Hono runs a HEAD request through the GET route and drops the body itself: cached as the GET it is.
    return this.context.req.method
  }

  header(name: string): string | undefined {
    if (this.#incoming !== undefined) {
      const value = this.#incoming.headers[name]
      return Array.isArray(value) ? value.join(', ') : value
    }
    return this.context.req.raw.headers.get(name) ?? undefined
  }
}

/**
 * Hono middleware caching the responses of the routes it is put in front of:
 *
 * ```ts
 * const responses = new ResponseCache({ cache, ttl: 60_000 })
 * app.get('/products/:id', cacheResponses(responses, { tags: (c) => [`product:${c.req.param('id')}`] }), handler)
 * ```
 *
 * The handler's response is stored when its status and headers allow it (checked before its body is
 * read) and its body ends within `maxBodyBytes`; `text/event-stream` and longer bodies go out as they are.
 */
export function cacheResponses<E extends Env = Env>(
  responses: ResponseCache | ResponseCacheOptions,
  route?: RouteCacheOptions<Context<E>>,
): MiddlewareHandler<E> {
  const cache = responses instanceof ResponseCache ? responses : new ResponseCache(responses)
  const settingsOf = routeSettingsOf(route, 'cacheResponses route options')
  const statusHeader = cache.statusHeader
  const maxBodyBytes = cache.maxBodyBytes
  return async (c, next) => {
    const delivery = await cache.serve(new HonoCacheRequest(c), settingsOf(c), async () => {
      // The handler answers every identical request waiting: it must see an unconditional request.
      const headers = c.req.raw.headers
      headers.delete('if-none-match')
      headers.delete('if-modified-since')
      const incoming = (c.env as NodeBindings | undefined)?.incoming
      if (incoming !== undefined) {
        delete incoming.headers['if-none-match']
        delete incoming.headers['if-modified-since']
      }
      await next()
      const response = c.res
      const header = (name: string) => response.headers.get(name) ?? undefined
      if (
        cache.unstorable(response.status, header) !== undefined ||
        header('content-type')?.startsWith('text/event-stream')
      ) {
        return 'untouched'
      }
      const body = await readWithin(response, maxBodyBytes)
      if (body instanceof Response) {
        c.res = undefined
        c.res = body
        return 'untouched'
      }
      return { status: response.status, headers: Object.fromEntries(response.headers), body }
    })
    if (delivery.kind === 'untouched') {
      if (statusHeader !== undefined) c.header(statusHeader, 'PASS')
      return
    }
    if (delivery.kind === 'proceed') {
      await next()
      if (statusHeader !== undefined) c.header(statusHeader, delivery.cache)
      return
    }
    if (delivery.cache === 'MISS' || delivery.cache === 'PASS') {
      // The handler's own response is replaced whole (assigning c.res would merge its headers in).
      const headers = new Headers()
      for (const [name, value] of Object.entries(delivery.headers)) {
        for (const one of typeof value === 'string' ? [value] : value) headers.append(name, one)
      }
      if (statusHeader !== undefined) headers.set(statusHeader, delivery.cache)
      c.res = undefined
      c.res = new Response((delivery.body ?? null) as string | Uint8Array<ArrayBuffer> | null, {
        status: delivery.status,
        headers,
      })
      return
    }
    const body = (delivery.body ?? null) as string | Uint8Array<ArrayBuffer> | null
    if ((c.env as NodeBindings | undefined)?.incoming !== undefined) {
      // On @hono/node-server: one Response with a plain headers object, which it writes as it is. c.body
      // would build a Headers object for more than one header, and the server then convert it back: that
      // cost a cached response 1.4× a static one (pnpm bench), against 1.2× this way.
      const headers = headersSetEarlier(c)
      for (const [name, value] of Object.entries(delivery.headers)) {
        headers[name] = typeof value === 'string' ? value : [...value]
      }
      if (delivery.age !== undefined) headers.age = String(delivery.age)
      if (statusHeader !== undefined) headers[statusHeader] = delivery.cache
      c.res = undefined
      c.res = new Response(body, {
        status: delivery.status,
        headers: headers as unknown as Record<string, string>,
      })
      return
    }
    if (delivery.age !== undefined) c.header('age', String(delivery.age))
    if (statusHeader !== undefined) c.header(statusHeader, delivery.cache)
    const headers = delivery.headers as Record<string, string | string[]>
    return body === null
      ? c.body(null, delivery.status as 304, headers)
      : c.body(body, delivery.status as 200, headers)
  }
}

/**
 * The headers middleware before this one set with `c.header()` (CORS, cookies…), which `c.body` would
 * have sent: the cached response carries them too, the stored headers winning, as with `c.body`.
 */
function headersSetEarlier(c: Context): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {}
  const earlier = c.res.headers
  for (const [name, value] of earlier) {
    if (name === 'set-cookie') headers[name] = earlier.getSetCookie()
    else headers[name] = value
  }
  return headers
}

/**
 * The body of `response`, or, once it grows past `max` bytes, a Response equal to it (what was read, then
 * the rest of the stream) to send instead: nothing is buffered beyond the limit.
 */
async function readWithin(response: Response, max: number): Promise<Uint8Array | Response> {
  const declared = Number(response.headers.get('content-length') ?? Number.NaN)
  if (response.body === null) return new Uint8Array(0)
  if (declared > max) return response
  const reader = response.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    chunks.push(value)
    size += value.byteLength
    if (size > max) {
      const rest = new ReadableStream<Uint8Array>({
        start(controller) {
          for (const chunk of chunks) controller.enqueue(chunk)
        },
        async pull(controller) {
          const next = await reader.read()
          if (next.done) controller.close()
          else controller.enqueue(next.value)
        },
        cancel(reason) {
          return reader.cancel(reason)
        },
      })
      return new Response(rest, response)
    }
  }
  return Buffer.concat(chunks)
}
