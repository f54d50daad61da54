import {
  type CacheRequest,
  type Delivery,
  type HandlerOutcome,
  ResponseCache,
  type ResponseCacheOptions,
  type RouteCacheOptions,
  type RouteSettings,
  routeSettingsOf,
} from '@layercache/http'
import type {
  FastifyPluginAsync,
  FastifyReply,
  FastifyRequest,
  onRequestAsyncHookHandler,
  onSendHookHandler,
  RouteOptions,
} from 'fastify'
import fp from 'fastify-plugin'

export {
  type CacheStatus,
  defaultBypass,
  ResponseCache,
  type ResponseCacheOptions,
  type RouteCacheOptions,
} from '@layercache/http'

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * @layercache/fastify: cache this route's responses (`true`, or its ttl, staleWhileRevalidate and
     * tags), or `false` to leave it out when the plugin caches all routes.
     */
    cache?: boolean | RouteCacheOptions<FastifyRequest>
  }
}

export interface FastifyResponseCacheOptions {
  /** The ResponseCache to use (or its options, to make one for this plugin). */
  readonly responses: ResponseCache | ResponseCacheOptions
  /**
   * Cache every GET route registered after the plugin, unless its `config.cache` is false. Default false:
   * only routes whose `config.cache` is set.
   */
  readonly allRoutes?: boolean
}

/** The request as the cache reads it. */
class FastifyCacheRequest implements CacheRequest {
  constructor(private readonly request: FastifyRequest) {}

  get method(): string {
    return this.request.method
  }

  get host(): string | undefined {
    return this.request.headers.host
  }

  get url(): string {
    return this.request.url
  }

  header(name: string): string | undefined {
    const value = this.request.headers[name]
    return Array.isArray(value) ? value.join(', ') : value
  }
}

/** A request whose handler runs for every identical request waiting: what onSend hands back to the cache. */
interface Running {
  readonly captured: (outcome: HandlerOutcome) => void
  readonly serving: Promise<Delivery>
}

const RUN = Symbol('run the handler')

const asList = <T>(hooks: T | T[] | undefined): T[] =>
  hooks === undefined ? [] : Array.isArray(hooks) ? hooks : [hooks]

const plugin: FastifyPluginAsync<FastifyResponseCacheOptions> = async (fastify, options) => {
  const responses =
    options.responses instanceof ResponseCache ? options.responses : new ResponseCache(options.responses)
  const allRoutes = options.allRoutes === true
  const statusHeader = responses.statusHeader
  const runningRequests = new WeakMap<FastifyRequest, Running>()

  const onRequestFor = (settingsOf: (request: FastifyRequest) => RouteSettings): onRequestAsyncHookHandler =>
    async function responseCacheOnRequest(request, reply) {
      let running: Running | undefined
      let captured!: (outcome: HandlerOutcome) => void
      // One promise settles with the cache's answer, or with RUN once this request is to run the handler.
      const first = await new Promise<Delivery | typeof RUN>((settle) => {
        const serving = responses.serve(new FastifyCacheRequest(request), settingsOf(request), () => {
          // The handler answers every identical request waiting: it must see an unconditional request.
          delete request.headers['if-none-match']
          delete request.headers['if-modified-since']
          running = { captured: (outcome) => captured(outcome), serving }
          settle(RUN)
          return new Promise<HandlerOutcome>((resolve) => (captured = resolve))
        })
        serving.then(settle)
      })
      if (first === RUN) {
        // The rest of this request's lifecycle runs the handler; onSend hands its response to the cache.
        runningRequests.set(request, running!)
        return
      }
      const delivery = first
      if (delivery.kind === 'proceed') {
        if (statusHeader !== undefined) reply.header(statusHeader, delivery.cache)
        return
      }
      if (delivery.kind === 'send') {
        apply(reply, delivery, statusHeader)
        return reply.send(delivery.body ?? '')
      }
    }

  // Callback style: a response the cache answered (every hit) passes through without a promise.
  const onSend: onSendHookHandler = function responseCacheOnSend(request, reply, payload, done) {
    const run = runningRequests.get(request)
    if (run === undefined) {
      done(null, payload)
      return
    }
    runningRequests.delete(request)
    handOver(run, reply, payload).then(
      (sent) => done(null, sent),
      (error: Error) => done(error),
    )
  }

  /** The response of the request that ran the handler, handed to the cache; what it sends instead. */
  const handOver = async (run: Running, reply: FastifyReply, payload: unknown): Promise<unknown> => {
    if (isStream(payload)) {
      run.captured('untouched')
      await run.serving
      if (statusHeader !== undefined) reply.header(statusHeader, 'PASS')
      return payload
    }
    run.captured({
      status: reply.statusCode,
      headers: reply.getHeaders(),
      body: (payload ?? '') as string | Uint8Array,
    })
    const delivery = await run.serving
    if (delivery.kind !== 'send') return payload
    for (const name of Object.keys(reply.getHeaders())) reply.removeHeader(name)
    apply(reply, delivery, statusHeader)
    return delivery.body ?? ''
  }

  // A client gone before its handler answered: the requests waiting for it run their own.
  const onRequestAbort = async (request: FastifyRequest) => {
    runningRequests.get(request)?.captured('untouched')
  }

  fastify.addHook('onRoute', (route: RouteOptions) => {
    const methods = asList(route.method)
    if (!methods.includes('GET') && !methods.includes('HEAD')) return
    const config = route.config?.cache
    if (config === false || (config === undefined && !allRoutes)) return
    const settingsOf = routeSettingsOf<FastifyRequest>(
      config === true || config === undefined ? undefined : config,
      `route ${route.url} config.cache`,
    )
    // Hooks of these routes only: other routes pay nothing for the cache.
    route.onRequest = [...asList(route.onRequest), onRequestFor(settingsOf)]
    route.onSend = [...asList(route.onSend), onSend]
    route.onRequestAbort = [...asList(route.onRequestAbort), onRequestAbort]
  })
}

function isStream(payload: unknown): boolean {
  return (
    typeof payload === 'object' &&
    payload !== null &&
    typeof (payload as { pipe?: unknown }).pipe === 'function'
  )
}

function apply(
  reply: FastifyReply,
  delivery: Delivery & { kind: 'send' },
  statusHeader: string | undefined,
): void {
  reply.code(delivery.status)
  reply.headers(delivery.headers as Record<string, string | string[]>)
  if (delivery.age !== undefined) reply.header('age', delivery.age)
  if (statusHeader !== undefined) reply.header(statusHeader, delivery.cache)
}

/**
 * The Fastify plugin: register it before the routes it should cache, then mark them.
 *
 * ```ts
 * await app.register(fastifyResponseCache, { responses: new ResponseCache({ cache, ttl: 60_000 }) })
 * app.get('/products/:id', { config: { cache: { tags: (req) => [`product:${(req.params as { id: string }).id}`] } } }, handler)
 * ```
 */
export const fastifyResponseCache = fp(plugin, { fastify: '5.x', name: '@layercache/fastify' })
