import { Buffer, isUtf8 } from 'node:buffer'
import { createHash } from 'node:crypto'
import { parseCacheControl } from './cache-control'
import { varyNames, varyValues } from './keys'
import type { CacheRequest, CapturedResponse, OutgoingHeaderValue, SendHeaders } from './types'

/**
 * A response as the cache keeps it: plain data, so the JSON serializer of the Redis layer stores it and
 * every instance reads back the same thing. Text bodies stay strings (what a handler's `send(string)`
 * costs), others are base64.
 */
export interface StoredResponse {
  readonly status: number
  /** Lower-case names, one string each; no hop-by-hop, `date`, `content-length` or `set-cookie`. */
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
  readonly base64: boolean
  /** The handler's ETag, or a strong one computed from the body. */
  readonly etag: string
  /** When the response was stored (ms since the epoch, this host's clock): for freshness and `Age` only. */
  readonly storedAt: number
  /** How long it is fresh, ms. */
  readonly fresh: number
  /** The response's Vary header names (normalised), [] when it does not vary. */
  readonly vary: readonly string[]
  /** The values of those headers in the request that produced it. */
  readonly varyValues: readonly string[]
}

/** Why a response was not stored (events and tests; adapters only see PASS). */
export type Unstorable =
  | 'status'
  | 'no-store'
  | 'private'
  | 'no-cache'
  | 's-maxage=0'
  | 'set-cookie'
  | 'vary-star'
  | 'too-large'

/** What a shared cache must not copy from one response into another's (RFC 9110 §7.6.1), or recomputes. */
const DROPPED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'date',
  'content-length',
  'age',
])

/** Headers a 304 repeats from the 200 it stands for (RFC 9110 §15.4.5). */
const NOT_MODIFIED_HEADERS = ['cache-control', 'content-location', 'etag', 'expires', 'vary']

export interface StoreRules {
  readonly statuses: ReadonlySet<number>
  readonly maxBodyBytes: number
  /** Lower case; excluded from what is stored and sent (the cache's own status header). */
  readonly statusHeader: string | undefined
}

/** One header value as a string (repeated values joined), or undefined. */
export function headerText(value: OutgoingHeaderValue): string | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'string') return value
  if (typeof value === 'number') return String(value)
  return value.join(', ')
}

/**
 * Whether a response with this status and these headers may be stored, before its body is read: adapters
 * whose bodies are streams ask first, so they never buffer what will not be kept.
 */
export function unstorableByHeaders(
  status: number,
  header: (name: string) => string | undefined,
  rules: StoreRules,
): Unstorable | undefined {
  if (!rules.statuses.has(status)) return 'status'
  if (header('set-cookie') !== undefined) return 'set-cookie'
  const directives = parseCacheControl(header('cache-control'))
  if (directives.noStore) return 'no-store'
  if (directives.private) return 'private'
  if (directives.noCache) return 'no-cache'
  if (directives.sMaxAge === 0) return 's-maxage=0'
  if (varyNames(header('vary'))[0] === '*') return 'vary-star'
  return undefined
}

/**
 * The stored form of a captured response, or why it may not be stored. `ttl` is the route's fresh
 * lifetime; the response's own `s-maxage` wins over it.
 */
export function storedResponseOf(
  captured: CapturedResponse,
  request: CacheRequest,
  ttl: number,
  rules: StoreRules,
  now: number,
): StoredResponse | Unstorable {
  const headers = captured.headers
  const unstorable = unstorableByHeaders(captured.status, (name) => headerText(headers[name]), rules)
  if (unstorable !== undefined) return unstorable
  const bytes =
    typeof captured.body === 'string'
      ? Buffer.from(captured.body)
      : Buffer.from(captured.body.buffer, captured.body.byteOffset, captured.body.byteLength)
  if (bytes.byteLength > rules.maxBodyBytes) return 'too-large'
  const kept: Record<string, string> = {}
  for (const name of Object.keys(headers)) {
    const lower = name.toLowerCase()
    const text = headerText(headers[name])
    if (text === undefined || DROPPED.has(lower) || lower === rules.statusHeader) continue
    kept[lower] = text
  }
  let etag = kept.etag
  if (etag === undefined) {
    etag = `"${createHash('sha1').update(bytes).digest('base64url')}"`
    kept.etag = etag
  }
  const sMaxAge = parseCacheControl(kept['cache-control']).sMaxAge
  const vary = varyNames(kept.vary)
  const text = typeof captured.body === 'string' || isUtf8(bytes)
  return {
    status: captured.status,
    headers: kept,
    body: text
      ? typeof captured.body === 'string'
        ? captured.body
        : bytes.toString('utf8')
      : bytes.toString('base64'),
    base64: !text,
    etag,
    storedAt: now,
    fresh: sMaxAge === undefined ? ttl : sMaxAge * 1000,
    vary,
    varyValues: vary.length === 0 ? [] : varyValues(vary, request),
  }
}

export function isStoredResponse(value: unknown): value is StoredResponse {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as StoredResponse).status === 'number' &&
    typeof (value as StoredResponse).body === 'string' &&
    typeof (value as StoredResponse).etag === 'string' &&
    Array.isArray((value as StoredResponse).vary)
  )
}

// Decoded binary bodies, per stored object: a memory hit hands out the same frozen object every time.
const decoded = new WeakMap<StoredResponse, Buffer>()

/** The body to send: the string itself, or the decoded bytes of a binary one. */
export function bodyOf(stored: StoredResponse): string | Buffer {
  if (!stored.base64) return stored.body
  let bytes = decoded.get(stored)
  if (bytes === undefined) {
    bytes = Buffer.from(stored.body, 'base64')
    decoded.set(stored, bytes)
  }
  return bytes
}

/**
 * Whether an If-None-Match value matches `etag`: `*`, or one of its entity tags by the weak comparison
 * (RFC 9110 §13.1.2: `W/"x"` and `"x"` match).
 */
export function matchesIfNoneMatch(ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false
  const plain = etag.startsWith('W/') ? etag.slice(2) : etag
  for (const part of ifNoneMatch.split(',')) {
    const tag = part.trim()
    if (tag === '*') return true
    if ((tag.startsWith('W/') ? tag.slice(2) : tag) === plain) return true
  }
  return false
}

/** The headers of the 304 that stands for `stored`. */
export function notModifiedHeaders(stored: StoredResponse): SendHeaders {
  const headers: Record<string, string> = {}
  for (const name of NOT_MODIFIED_HEADERS) {
    const value = stored.headers[name]
    if (value !== undefined) headers[name] = value
  }
  return headers
}

/** A captured response to send as it is (not stored): every header but the recomputed ones. */
export function sendHeadersOf(captured: CapturedResponse, statusHeader: string | undefined): SendHeaders {
  const headers: Record<string, string | readonly string[]> = {}
  for (const name of Object.keys(captured.headers)) {
    const lower = name.toLowerCase()
    const value = captured.headers[name]
    if (value === undefined || lower === 'content-length' || lower === 'transfer-encoding') continue
    if (lower === statusHeader) continue
    headers[lower] = typeof value === 'number' ? String(value) : value
  }
  return headers
}
