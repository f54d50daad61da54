import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import {
  type CacheRequest,
  type Delivery,
  type HandlerOutcome,
  ResponseCache,
  type ResponseCacheOptions,
  type RouteCacheOptions,
  routeSettingsOf,
} from '@layercache/http'

export {
  type CacheStatus,
  defaultBypass,
  ResponseCache,
  type ResponseCacheOptions,
  type RouteCacheOptions,
} from '@layercache/http'

/** Express's `next`, as much of it as the middleware calls. */
export type NextFunction = (error?: unknown) => void

/** An Express (4 or 5) middleware; `Req` is Express's Request (or any IncomingMessage subtype). */
export type ResponseCacheMiddleware<Req extends IncomingMessage> = (
  req: Req,
  res: ServerResponse,
  next: NextFunction,
) => void

/** The request as the cache reads it: Express's `originalUrl` (the whole path, also under a mounted router). */
class ExpressCacheRequest implements CacheRequest {
  constructor(private readonly req: IncomingMessage & { originalUrl?: string }) {}

  get method(): string {
    return this.req.method ?? 'GET'
  }

  get host(): string | undefined {
    return this.req.headers.host
  }

  get url(): string {
    return this.req.originalUrl ?? this.req.url ?? '/'
  }

  header(name: string): string | undefined {
    const value = this.req.headers[name]
    return Array.isArray(value) ? value.join(', ') : value
  }
}

/**
 * Caches the responses of the routes it is put in front of, in a ResponseCache (one per app is usual, or
 * options to make one for this middleware alone):
 *
 * ```ts
 * const responses = new ResponseCache({ cache, ttl: 60_000 })
 * app.get('/products/:id', cacheResponses(responses, { tags: (req) => [`product:${req.params.id}`] }), handler)
 * ```
 *
 * Identical concurrent GETs run the handler once; the handler's response is captured whole (nothing
 * reaches the client until it ends) unless it streams: a `write()` before `end()` sends it as it goes,
 * and it is not stored.
 */
export function cacheResponses<Req extends IncomingMessage = IncomingMessage>(
  responses: ResponseCache | ResponseCacheOptions,
  route?: RouteCacheOptions<Req>,
): ResponseCacheMiddleware<Req> {
  const cache = responses instanceof ResponseCache ? responses : new ResponseCache(responses)
  const settingsOf = routeSettingsOf(route, 'cacheResponses route options')
  const statusHeader = cache.statusHeader
  return (req, res, next) => {
    cache
      .serve(new ExpressCacheRequest(req), settingsOf(req), () => runCaptured(req, res, next, statusHeader))
      .then(
        (delivery) => carryOut(delivery, res, next, statusHeader),
        (error: unknown) => next(error),
      )
  }
}

type Writable = Record<'writeHead' | 'write' | 'end' | 'flushHeaders', unknown>

/**
 * Runs the rest of the chain for this request with its response captured: `writeHead` and `end` are
 * recorded, not sent, and `end` resolves with the whole response. A `write` or `flushHeaders` first means
 * a streamed body: the response goes out from there as the handler writes it.
 */
function runCaptured(
  req: IncomingMessage,
  res: ServerResponse,
  next: NextFunction,
  statusHeader: string | undefined,
): Promise<HandlerOutcome> {
  // Its answer may go to every identical request waiting: the handler must see an unconditional request
  // (Express's own 304 would leave nothing to store). The cache answers If-None-Match itself.
  delete req.headers['if-none-match']
  delete req.headers['if-modified-since']
  return new Promise<HandlerOutcome>((resolve) => {
    const target = res as unknown as Writable
    // Restored as they were, own properties included (compression and other middleware wrap these too).
    const saved: Writable = {
      writeHead: target.writeHead,
      write: target.write,
      end: target.end,
      flushHeaders: target.flushHeaders,
    }
    const restore = () => Object.assign(target, saved)
    const streaming = (method: 'write' | 'flushHeaders') =>
      function (this: ServerResponse, ...args: unknown[]) {
        restore()
        if (statusHeader !== undefined && !res.headersSent) res.setHeader(statusHeader, 'PASS')
        resolve('untouched')
        return (res[method] as (...a: unknown[]) => unknown)(...args)
      }
    target.write = streaming('write')
    target.flushHeaders = streaming('flushHeaders')
    target.writeHead = (status: number, reason?: unknown, headers?: unknown) => {
      res.statusCode = status
      if (typeof reason === 'string') res.statusMessage = reason
      else headers = reason
      applyWriteHeadHeaders(res, headers)
      return res
    }
    target.end = (chunk?: unknown, encoding?: unknown, callback?: unknown) => {
      if (typeof chunk === 'function') [callback, chunk] = [chunk, undefined]
      else if (typeof encoding === 'function') [callback, encoding] = [encoding, undefined]
      restore()
      if (typeof callback === 'function') res.once('finish', callback as () => void)
      resolve({ status: res.statusCode, headers: res.getHeaders(), body: bodyOf(chunk, encoding) })
      return res
    }
    next()
  })
}

function bodyOf(chunk: unknown, encoding: unknown): string | Uint8Array {
  if (chunk === undefined || chunk === null) return ''
  if (typeof chunk === 'string') {
    return typeof encoding === 'string' && !/^utf-?8$/i.test(encoding)
      ? Buffer.from(chunk, encoding as BufferEncoding)
      : chunk
  }
  return chunk as Uint8Array
}

/** writeHead's headers: an object, or a flat `[name, value, …]` list, or a list of pairs. */
function applyWriteHeadHeaders(res: ServerResponse, headers: unknown): void {
  if (headers === undefined || headers === null) return
  if (!Array.isArray(headers)) {
    for (const [name, value] of Object.entries(headers as OutgoingHttpHeaders)) {
      if (value !== undefined) res.setHeader(name, value)
    }
    return
  }
  if (Array.isArray(headers[0])) {
    for (const [name, value] of headers as [string, string][]) res.setHeader(name, value)
    return
  }
  for (let i = 0; i + 1 < headers.length; i += 2) res.setHeader(String(headers[i]), headers[i + 1])
}

function carryOut(
  delivery: Delivery,
  res: ServerResponse,
  next: NextFunction,
  statusHeader: string | undefined,
): void {
  if (delivery.kind === 'untouched') return
  if (delivery.kind === 'proceed') {
    if (statusHeader !== undefined) res.setHeader(statusHeader, delivery.cache)
    next()
    return
  }
  // The handler's own response (MISS, PASS) is replaced whole; a hit keeps what earlier middleware set.
  if (delivery.cache === 'MISS' || delivery.cache === 'PASS') {
    for (const name of res.getHeaderNames()) res.removeHeader(name)
  }
  res.statusCode = delivery.status
  const headers = delivery.headers
  for (const name in headers) res.setHeader(name, headers[name]!)
  if (delivery.age !== undefined) res.setHeader('age', delivery.age)
  if (statusHeader !== undefined) res.setHeader(statusHeader, delivery.cache)
  if (delivery.body === undefined) res.end()
  else res.end(delivery.body)
}
