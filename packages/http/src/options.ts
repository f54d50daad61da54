import {
  assertKey,
  assertKnownOptions,
  assertPositiveInteger,
  assertTags,
  assertTtl,
  type CacheStack,
  InvalidOptionError,
} from '@layercache/core'
import type { CacheRequest, RouteSettings } from './types'

/** The part of a CacheStack (or a namespace of one) the response cache uses. */
export type ResponseStore = Pick<CacheStack, 'getOrSet' | 'refresh' | 'get' | 'invalidateByTags'>

export interface ResponseCacheOptions {
  /** Where responses live: a CacheStack or a namespace of one (memory, Redis, both). */
  readonly cache: ResponseStore
  /** How long a stored response is fresh, ms (a route's `ttl` or the response's `s-maxage` win). */
  readonly ttl: number
  /**
   * After the fresh lifetime, serve the stale response for this long (ms) while one request revalidates
   * it. Default 0 (off).
   */
  readonly staleWhileRevalidate?: number
  /** Start of every key. Default `'http:'`. */
  readonly prefix?: string
  /** Statuses that may be stored. Default `[200]`. */
  readonly statuses?: readonly number[]
  /** Larger bodies are passed on, not stored. Default 1 MiB. */
  readonly maxBodyBytes?: number
  /**
   * Requests answered without the cache (not read, not stored). Default `defaultBypass`: those with an
   * `Authorization` or `Cookie` header. Only GET and HEAD are ever cached, whatever this says.
   */
  readonly bypass?: (request: CacheRequest) => boolean
  /** Response header telling how the cache answered (HIT, STALE, MISS, PASS, BYPASS). Default `'x-cache'`; false: none. */
  readonly statusHeader?: string | false
  /** Told about failures of the cache itself (the request is then answered by the handler). */
  readonly onError?: (error: unknown) => void
}

const OPTIONS = [
  'cache',
  'ttl',
  'staleWhileRevalidate',
  'prefix',
  'statuses',
  'maxBodyBytes',
  'bypass',
  'statusHeader',
  'onError',
] as const

/** A route's cache settings, as the framework adapters take them; `Req` is the framework's request. */
export interface RouteCacheOptions<Req> {
  /** Fresh lifetime of this route's responses, ms. */
  readonly ttl?: number
  /** Stale-while-revalidate window of this route's responses, ms. */
  readonly staleWhileRevalidate?: number
  /** Tags of the stored responses, or a function of the request giving them (e.g. from route params). */
  readonly tags?: readonly string[] | ((request: Req) => readonly string[])
}

const ROUTE_OPTIONS = ['ttl', 'staleWhileRevalidate', 'tags'] as const

/** Requests carrying credentials are one user's business: `Authorization` or `Cookie` present. */
export function defaultBypass(request: CacheRequest): boolean {
  return request.header('authorization') !== undefined || request.header('cookie') !== undefined
}

// An HTTP field name (RFC 9110 §5.1, token characters).
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

export interface ResolvedOptions {
  readonly cache: ResponseStore
  readonly ttl: number
  readonly staleWhileRevalidate: number
  readonly prefix: string
  readonly statuses: ReadonlySet<number>
  readonly maxBodyBytes: number
  readonly bypass: (request: CacheRequest) => boolean
  readonly statusHeader: string | undefined
  readonly onError: (error: unknown) => void
}

function window(value: unknown, what: string): number | undefined {
  if (value === 0) return 0
  return assertTtl(value, what)
}

/** Checks every option (InvalidOptionError / InvalidTtlError naming the one at fault) and fills defaults. */
export function resolveOptions(options: ResponseCacheOptions): ResolvedOptions {
  assertKnownOptions(options, OPTIONS, 'ResponseCache')
  if (options === undefined)
    throw new InvalidOptionError('ResponseCache: options are required ({ cache, ttl })')
  const cache = options.cache as Partial<ResponseStore> | undefined
  if (
    cache === null ||
    typeof cache !== 'object' ||
    typeof cache.getOrSet !== 'function' ||
    typeof cache.refresh !== 'function' ||
    typeof cache.get !== 'function' ||
    typeof cache.invalidateByTags !== 'function'
  ) {
    throw new InvalidOptionError('ResponseCache: `cache` must be a CacheStack (or a namespace of one)')
  }
  const ttl = assertTtl(options.ttl, 'ResponseCache ttl')
  if (ttl === undefined)
    throw new InvalidOptionError('ResponseCache: `ttl` is required (ms a response stays fresh)')
  const prefix = options.prefix ?? 'http:'
  if (typeof prefix !== 'string' || prefix.length > 64) {
    throw new InvalidOptionError(
      `ResponseCache: invalid prefix ${String(prefix)}: expected a string of 1 to 64 characters`,
    )
  }
  // As a namespace name: no control characters, not in the reserved "~" space (InvalidKeyError).
  assertKey(prefix)
  const statuses = options.statuses ?? [200]
  if (
    !Array.isArray(statuses) ||
    statuses.length === 0 ||
    !statuses.every(
      (status) =>
        Number.isInteger(status) && status >= 200 && status <= 599 && status !== 206 && status !== 304,
    )
  ) {
    throw new InvalidOptionError(
      'ResponseCache: `statuses` must be a non-empty array of statuses from 200 to 599 (206 and 304 cannot be stored)',
    )
  }
  const statusHeader = options.statusHeader ?? 'x-cache'
  if (statusHeader !== false && (typeof statusHeader !== 'string' || !FIELD_NAME.test(statusHeader))) {
    throw new InvalidOptionError(
      `ResponseCache: \`statusHeader\` must be a header name or false, got ${String(statusHeader)}`,
    )
  }
  for (const name of ['bypass', 'onError'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'function') {
      throw new InvalidOptionError(`ResponseCache: \`${name}\` must be a function`)
    }
  }
  return {
    cache: options.cache,
    ttl,
    staleWhileRevalidate: window(options.staleWhileRevalidate, 'ResponseCache staleWhileRevalidate') ?? 0,
    prefix,
    statuses: new Set(statuses),
    maxBodyBytes: assertPositiveInteger(options.maxBodyBytes, 'ResponseCache maxBodyBytes') ?? 1024 * 1024,
    bypass: options.bypass ?? defaultBypass,
    statusHeader: statusHeader === false ? undefined : statusHeader.toLowerCase(),
    onError: options.onError ?? (() => {}),
  }
}

/**
 * Checks a route's options once, when the route is declared, and returns what gives the settings of each
 * request (the same object every time unless tags are a function).
 */
export function routeSettingsOf<Req>(
  options: RouteCacheOptions<Req> | undefined,
  where: string,
): (request: Req) => RouteSettings {
  assertKnownOptions(options, ROUTE_OPTIONS, where)
  if (options === undefined) return () => NO_SETTINGS
  const ttl = assertTtl(options.ttl, `${where} ttl`)
  const staleWhileRevalidate = window(options.staleWhileRevalidate, `${where} staleWhileRevalidate`)
  const tags = options.tags
  if (typeof tags === 'function') {
    return (request) => ({ ttl, staleWhileRevalidate, tags: tags(request) })
  }
  const settings: RouteSettings = { ttl, staleWhileRevalidate, tags: assertTags(tags) }
  return () => settings
}

const NO_SETTINGS: RouteSettings = {}
