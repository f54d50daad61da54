import { coarseNow, type LoaderContext, MAX_TTL_MS } from '@layercache/core'
import { baseKey, sameList, variantKey, varyValues } from './keys'
import { type ResolvedOptions, type ResponseCacheOptions, resolveOptions } from './options'
import {
  bodyOf,
  isStoredResponse,
  matchesIfNoneMatch,
  notModifiedHeaders,
  type StoredResponse,
  type StoreRules,
  sendHeadersOf,
  storedResponseOf,
  type Unstorable,
  unstorableByHeaders,
} from './stored-response'
import type { CacheRequest, CacheStatus, Delivery, HandlerOutcome, RouteSettings } from './types'

const BYPASS: Delivery = { kind: 'proceed', cache: 'BYPASS' }
const PASS: Delivery = { kind: 'proceed', cache: 'PASS' }
const UNTOUCHED: Delivery = { kind: 'untouched' }

/**
 * HTTP response caching on a CacheStack, independent of any framework: the Express, Fastify and Hono
 * packages turn their requests into a CacheRequest, call `serve`, and carry out the Delivery it returns.
 *
 * - Key: `GET`, host, path and query; then, when the response names headers in `Vary`, the request's
 *   values of those headers (a response with `Vary: *` is never stored).
 * - Requests other than GET and HEAD, and (by default) those with `Authorization` or `Cookie`, bypass.
 * - A response is stored only with an allowed status (200 by default), no `Set-Cookie`, no
 *   `Cache-Control: no-store`, `private` or `no-cache`, a body read whole within `maxBodyBytes`.
 * - ETag (the handler's or one from the body) and 304 on a matching `If-None-Match`.
 * - Concurrent identical requests run the handler once (getOrSet's single-flight; across instances with a
 *   singleFlightCoordinator). When that response may not be stored, the requests that waited for it run
 *   the handler each for themselves: it may be one user's (Set-Cookie, private), so it is never shared.
 * - Stale-while-revalidate: past its fresh lifetime and within the window, a response is served stale to
 *   everyone while the first request that found it stale runs the handler and stores the new one.
 * - Tags per route: `invalidateByTag` on the stack (or `purge`) removes the pages a write touched.
 */
export class ResponseCache {
  readonly #options: ResolvedOptions
  readonly #rules: StoreRules
  /** Keys being revalidated by a request of this instance (bounded by the requests in flight). */
  readonly #revalidating = new Set<string>()

  constructor(options: ResponseCacheOptions) {
    this.#options = resolveOptions(options)
    this.#rules = {
      statuses: this.#options.statuses,
      maxBodyBytes: this.#options.maxBodyBytes,
      statusHeader: this.#options.statusHeader,
    }
  }

  /** The response header that tells how the cache answered, lower case; undefined when turned off. */
  get statusHeader(): string | undefined {
    return this.#options.statusHeader
  }

  /** Bodies larger than this are not stored (adapters stop buffering past it). */
  get maxBodyBytes(): number {
    return this.#options.maxBodyBytes
  }

  /** Removes every stored response carrying any of `tags`; resolves to how many entries went. */
  purge(...tags: string[]): Promise<number> {
    return this.#options.cache.invalidateByTags(tags, 'any')
  }

  /** The key a request's response is stored under (before any Vary variant): for invalidateByPrefix/delete. */
  keyOf(request: Pick<CacheRequest, 'host' | 'url'>): string {
    return baseKey(this.#options.prefix, { ...request, method: 'GET', header: () => undefined })
  }

  /**
   * Why a response with this status and these headers cannot be stored, or undefined when it may be:
   * adapters whose bodies are streams check this before reading one.
   */
  unstorable(status: number, header: (name: string) => string | undefined): Unstorable | undefined {
    return unstorableByHeaders(status, header, this.#rules)
  }

  /**
   * Answers a request: from the cache, by running the handler once for all identical requests in flight
   * (`run` captures its response; it is called at most once, and only while `serve` is pending), or by
   * telling the adapter to let the handler answer on its own.
   */
  async serve(
    request: CacheRequest,
    route: RouteSettings,
    run: () => Promise<HandlerOutcome>,
  ): Promise<Delivery> {
    const options = this.#options
    const method = request.method
    if ((method !== 'GET' && method !== 'HEAD') || options.bypass(request)) return BYPASS
    const base = baseKey(options.prefix, request)
    const ifNoneMatch = request.header('if-none-match')
    if (method === 'HEAD') return this.#head(base, request, ifNoneMatch)
    const visit = new Visit(request, route, run, options, this.#rules)
    let found: unknown
    let stale = false
    try {
      let key = base
      found = await options.cache.getOrSet(base, visit.load)
      if (visit.outcome === undefined && isStoredResponse(found) && found.vary.length > 0) {
        // The entry at the URL's key is the variant of the request that stored it; another variant has its own key.
        const values = varyValues(found.vary, request)
        if (!sameList(values, found.varyValues)) {
          key = variantKey(base, found.vary, values)
          visit.expected = found.vary
          found = await options.cache.getOrSet(key, visit.load)
        }
      }
      if (visit.outcome === undefined && isStoredResponse(found) && this.#isStale(found)) {
        stale = true
        if (!this.#revalidating.has(key)) {
          // The first request to find it stale runs the handler; the rest are served stale meanwhile.
          this.#revalidating.add(key)
          try {
            visit.expected = key === base ? undefined : found.vary
            found = await options.cache.refresh(key, visit.load)
            stale = false
          } finally {
            this.#revalidating.delete(key)
          }
        }
      }
    } catch (error) {
      options.onError(error)
      if (visit.outcome === undefined) return PASS
    }
    // From here on a loader call of this visit runs nothing. One that started already (a stack-wide
    // background refresh can start it between the answer and this line) makes this request its runner.
    visit.done = true
    if (visit.running !== undefined && visit.outcome === undefined) {
      await visit.running.catch(() => {})
    }
    if (visit.outcome !== undefined) return this.#ownDelivery(visit, ifNoneMatch)
    // Not storable: the requests that waited for it answer for themselves (it may be one user's response).
    if (!isStoredResponse(found)) return PASS
    return this.#deliver(found, stale ? 'STALE' : 'HIT', ifNoneMatch)
  }

  /** HEAD reads the GET entry; on a miss the handler answers (a HEAD response has no body to store). */
  async #head(base: string, request: CacheRequest, ifNoneMatch: string | undefined): Promise<Delivery> {
    const cache = this.#options.cache
    try {
      let found = await cache.get(base)
      if (isStoredResponse(found) && found.vary.length > 0) {
        const values = varyValues(found.vary, request)
        if (!sameList(values, found.varyValues)) found = await cache.get(variantKey(base, found.vary, values))
      }
      if (!isStoredResponse(found)) return PASS
      return this.#deliver(found, this.#isStale(found) ? 'STALE' : 'HIT', ifNoneMatch)
    } catch (error) {
      this.#options.onError(error)
      return PASS
    }
  }

  /** The answer to the request whose handler ran. */
  #ownDelivery(visit: Visit, ifNoneMatch: string | undefined): Delivery {
    const outcome = visit.outcome!
    if (outcome === 'untouched') return UNTOUCHED
    if (visit.stored !== undefined)
      return this.#deliver(visit.stored, visit.kept ? 'MISS' : 'PASS', ifNoneMatch)
    return {
      kind: 'send',
      status: outcome.status,
      headers: sendHeadersOf(outcome, this.#options.statusHeader),
      body: outcome.body,
      age: undefined,
      cache: 'PASS',
    }
  }

  #deliver(stored: StoredResponse, cache: CacheStatus, ifNoneMatch: string | undefined): Delivery {
    const age =
      cache === 'HIT' || cache === 'STALE'
        ? Math.max(0, Math.floor((coarseNow() - stored.storedAt) / 1000))
        : undefined
    if (matchesIfNoneMatch(ifNoneMatch, stored.etag)) {
      return { kind: 'send', status: 304, headers: notModifiedHeaders(stored), body: undefined, age, cache }
    }
    return { kind: 'send', status: stored.status, headers: stored.headers, body: bodyOf(stored), age, cache }
  }

  #isStale(stored: StoredResponse): boolean {
    return coarseNow() - stored.storedAt > stored.fresh
  }
}

/** One request's way through the cache: the loader it offers, and what its handler produced if it ran. */
class Visit {
  /** The handler run, once this request started it. */
  running: Promise<HandlerOutcome> | undefined
  /** What the handler produced, once this request ran it. */
  outcome: HandlerOutcome | undefined
  /** Its response in stored form, when it could be stored. */
  stored: StoredResponse | undefined
  /** Whether `stored` was handed to the cache (false: it varies differently from the entry it was loaded for). */
  kept = false
  /** At a variant's key: the Vary names the response must have to be stored there. */
  expected: readonly string[] | undefined
  /** Set once serve() has its answer: a loader called later (a stack-wide background refresh) has no request to run. */
  done = false

  constructor(
    private readonly request: CacheRequest,
    private readonly route: RouteSettings,
    private readonly run: () => Promise<HandlerOutcome>,
    private readonly options: ResolvedOptions,
    private readonly rules: StoreRules,
  ) {}

  readonly load = async (context: LoaderContext<unknown>): Promise<StoredResponse | undefined> => {
    // Returning undefined stores nothing and leaves any cached entry as it is.
    if (this.done || this.running !== undefined) return undefined
    this.running = this.run()
    this.outcome = await this.running
    if (this.outcome === 'untouched') return undefined
    const options = this.options
    const built = storedResponseOf(
      this.outcome,
      this.request,
      this.route.ttl ?? options.ttl,
      this.rules,
      coarseNow(),
    )
    if (typeof built === 'string') return undefined
    this.stored = built
    if (this.expected !== undefined && !sameList(built.vary, this.expected)) return undefined
    const window = this.route.staleWhileRevalidate ?? options.staleWhileRevalidate
    context.setTtl(Math.min(MAX_TTL_MS, Math.max(1, Math.round(built.fresh + window))))
    if (this.route.tags !== undefined) context.setTags(this.route.tags)
    this.kept = true
    return built
  }
}
