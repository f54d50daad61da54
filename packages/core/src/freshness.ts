import { coarseNow } from './coarse-clock'
import { type CacheEntry, createEntry } from './entry'
import { InvalidOptionError } from './errors'
import { assertTtl } from './validation'

/**
 * How getOrSet keeps values fresh and the database calm. Every option can be set on the stack (the
 * default) and per call. Durations are milliseconds.
 */
export interface FreshnessOptions {
  /** After the TTL, serve the stale value at once for this long while one background refresh runs (0: off). */
  readonly staleWhileRevalidate?: number
  /** After the TTL, serve the last value for this long when the loader fails or times out hard (0: off). */
  readonly staleIfError?: number
  /** After a loader failure answered from stale, wait this long before calling the loader again. Default 1000. */
  readonly errorRetryAfter?: number
  /** With a stale value at hand, answer with it when the loader takes longer than this; it keeps running. */
  readonly softTimeout?: number
  /** Give up on the loader after this long: LoaderTimeoutError (or stale-if-error). Late results are dropped. */
  readonly hardTimeout?: number
  /** Refresh in the background once this fraction (0 < f < 1) of the TTL has passed and the key is read. */
  readonly refreshAhead?: number
  /** Probabilistic early expiration (XFetch) with this beta (> 0; 1 is the usual choice). */
  readonly earlyExpiration?: number
  /** Shortens each TTL by a random share of up to this fraction (0 ≤ j < 1), so keys written together expire apart. */
  readonly jitter?: number
  /** Cache a loader's `undefined` or `null` for this long (instead of not caching / the normal TTL). */
  readonly negativeTtl?: number
  /** Decide from the loaded value whether to cache it at all. */
  readonly shouldCache?: (value: unknown) => boolean
}

/** The names of FreshnessOptions, for code that checks options passed on to getOrSet (the NestJS decorators). */
export const FRESHNESS_OPTIONS = [
  'staleWhileRevalidate',
  'staleIfError',
  'errorRetryAfter',
  'softTimeout',
  'hardTimeout',
  'refreshAhead',
  'earlyExpiration',
  'jitter',
  'negativeTtl',
  'shouldCache',
] as const

/** Resolved, validated options; `active` is false when nothing beyond plain TTLs is asked for. */
export interface FreshnessPolicy {
  readonly staleWhileRevalidate: number
  readonly staleIfError: number
  readonly errorRetryAfter: number
  readonly softTimeout: number | undefined
  readonly hardTimeout: number | undefined
  readonly refreshAhead: number | undefined
  readonly earlyExpiration: number | undefined
  readonly jitter: number
  readonly negativeTtl: number | undefined
  readonly shouldCache: ((value: unknown) => boolean) | undefined
  /** Any of the read-side checks (stale windows, early refresh) applies. */
  readonly active: boolean
}

export const NO_FRESHNESS: FreshnessPolicy = resolveFreshness(undefined, undefined)

function fraction(
  value: unknown,
  name: string,
  min: number,
  max: number,
  inclusiveMin: boolean,
): number | undefined {
  if (value === undefined) return undefined
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (inclusiveMin ? value >= min : value > min) &&
    value < max
  if (!ok) {
    throw new InvalidOptionError(
      `Invalid ${name} ${String(value)}: expected a number ${inclusiveMin ? '≥' : '>'} ${min} and < ${max}`,
    )
  }
  return value as number
}

function window(value: unknown, name: string): number {
  return value === 0 ? 0 : (assertTtl(value, name) ?? 0)
}

/** Merges call options over stack defaults and validates them (bad input throws before anything runs). */
export function resolveFreshness(
  defaults: FreshnessOptions | undefined,
  call: FreshnessOptions | undefined,
): FreshnessPolicy {
  const pick = <K extends keyof FreshnessOptions>(name: K): FreshnessOptions[K] =>
    call?.[name] !== undefined ? call[name] : defaults?.[name]
  // 0 is allowed for the windows, so a call can switch off a stack default.
  const staleWhileRevalidate = window(pick('staleWhileRevalidate'), 'staleWhileRevalidate')
  const staleIfError = window(pick('staleIfError'), 'staleIfError')
  const errorRetryAfter = assertTtl(pick('errorRetryAfter'), 'errorRetryAfter') ?? 1000
  const softTimeout = assertTtl(pick('softTimeout'), 'softTimeout')
  const hardTimeout = assertTtl(pick('hardTimeout'), 'hardTimeout')
  if (softTimeout !== undefined && hardTimeout !== undefined && softTimeout >= hardTimeout) {
    throw new InvalidOptionError('softTimeout must be shorter than hardTimeout')
  }
  const refreshAhead = fraction(pick('refreshAhead'), 'refreshAhead', 0, 1, false)
  const earlyExpiration = fraction(pick('earlyExpiration'), 'earlyExpiration', 0, 1000, false)
  const jitter = fraction(pick('jitter'), 'jitter', 0, 1, true) ?? 0
  const negativeTtl = assertTtl(pick('negativeTtl'), 'negativeTtl')
  const shouldCache = pick('shouldCache')
  if (shouldCache !== undefined && typeof shouldCache !== 'function') {
    throw new InvalidOptionError('shouldCache must be a function (value) => boolean')
  }
  return {
    staleWhileRevalidate,
    staleIfError,
    errorRetryAfter,
    softTimeout,
    hardTimeout,
    refreshAhead,
    earlyExpiration,
    jitter,
    negativeTtl,
    shouldCache,
    active:
      staleWhileRevalidate > 0 ||
      staleIfError > 0 ||
      refreshAhead !== undefined ||
      earlyExpiration !== undefined,
  }
}

export function hasFreshnessOption(options: object): boolean {
  for (const name of FRESHNESS_OPTIONS) if (name in options) return true
  return false
}

/**
 * What a read should do with an entry:
 * - `fresh`: serve it;
 * - `ahead` / `early`: serve it and refresh in the background (refresh-ahead / early expiration fired);
 * - `revalidate`: stale but inside the stale-while-revalidate window: serve it, refresh in the background;
 * - `fallback`: stale beyond that window: load now, keeping it only as the stale-if-error fallback.
 */
const XFETCH_MAX_FACTOR = 37

export type Verdict = 'fresh' | 'ahead' | 'early' | 'revalidate' | 'fallback'

export function judge(entry: CacheEntry, policy: FreshnessPolicy): Verdict {
  const freshUntil = entry.freshUntil
  if (freshUntil === undefined) return 'fresh'
  const now = coarseNow()
  if (now >= freshUntil || entry.expired === true) {
    return now < freshUntil + policy.staleWhileRevalidate ? 'revalidate' : 'fallback'
  }
  if (policy.refreshAhead !== undefined && entry.createdAt !== undefined) {
    if (now >= entry.createdAt + (freshUntil - entry.createdAt) * policy.refreshAhead) return 'ahead'
  }
  if (policy.earlyExpiration !== undefined && entry.loadMs !== undefined) {
    // XFetch: refresh early with a probability that grows as expiry nears and with the cost of a load.
    // -ln(Math.random()) never exceeds ~36.05 (the smallest draw is 2^-52), so far from expiry the draw
    // cannot fire and is skipped.
    const scale = entry.loadMs * policy.earlyExpiration
    if (freshUntil - now <= scale * XFETCH_MAX_FACTOR) {
      const gap = -scale * Math.log(Math.random())
      if (now + gap >= freshUntil) return 'early'
    }
  }
  return 'fresh'
}

/** Can `entry` still stand in for a failed load? */
export function usableOnError(entry: CacheEntry | undefined, policy: FreshnessPolicy): boolean {
  if (entry === undefined) return false
  if (entry.freshUntil === undefined) return true
  return coarseNow() < entry.freshUntil + policy.staleIfError
}

/** The fresh TTL after jitter: never longer than asked, so jitter cannot make data staler. */
export function jittered(ttl: number, policy: FreshnessPolicy): number {
  if (policy.jitter === 0) return ttl
  return Math.max(1, Math.round(ttl * (1 - policy.jitter * Math.random())))
}

/** How long layers keep an entry: its fresh TTL plus the longest stale window. */
export function storedTtl(freshTtl: number, policy: FreshnessPolicy): number {
  return freshTtl + Math.max(policy.staleWhileRevalidate, policy.staleIfError)
}

/**
 * The entry a write stores: with a freshness policy the value is fresh for the (jittered) TTL and kept
 * for the stale windows after it; without one it is a plain entry that lives for the TTL.
 */
export function buildEntry(
  value: unknown,
  ttl: number | undefined,
  tags: readonly string[] | undefined,
  policy: FreshnessPolicy,
  loadMs?: number,
): { entry: CacheEntry; ttl: number | undefined } {
  if (ttl === undefined) return { entry: createEntry(value, undefined, tags), ttl }
  const fresh = jittered(ttl, policy)
  if (!policy.active) return { entry: createEntry(value, fresh, tags), ttl: fresh }
  const now = Date.now()
  const stored = storedTtl(fresh, policy)
  return {
    entry: { value, expiresAt: now + stored, tags, freshUntil: now + fresh, createdAt: now, loadMs },
    ttl: stored,
  }
}
