/** What the cache reads of a request, whatever framework received it. */
export interface CacheRequest {
  /** Upper case, as received (`GET`, `HEAD`, …). */
  readonly method: string
  /** The Host header (or the authority of an absolute URL); part of the key, so hosts never share pages. */
  readonly host: string | undefined
  /** The path and query string as received (`/products?page=2`). */
  readonly url: string
  /** A request header's value by lower-case name; repeated headers joined with `, `. */
  header(name: string): string | undefined
}

/** Header values as frameworks hand them over (Node's `getHeaders()` shape). */
export type OutgoingHeaderValue = string | number | readonly string[] | undefined

/** A response the handler produced, captured whole before anything was sent. */
export interface CapturedResponse {
  readonly status: number
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, OutgoingHeaderValue>>
  readonly body: string | Uint8Array
}

/**
 * What running the handler gave: a captured response, or `'untouched'` when the response goes out as the
 * handler made it (a streamed body, or one the adapter saw could not be stored before reading its body).
 */
export type HandlerOutcome = CapturedResponse | 'untouched'

/**
 * How a response left the cache, in the status header (`x-cache` by default):
 * HIT (from the cache, or shared by concurrent identical requests), STALE (served past its freshness
 * while another request revalidates it), MISS (the handler ran and its response was stored), PASS (the
 * handler ran and its response was not storable), BYPASS (the request is not one the cache answers).
 */
export type CacheStatus = 'HIT' | 'STALE' | 'MISS' | 'PASS' | 'BYPASS'

/** Headers to send: lower-case names; `set-cookie` may be a list. */
export type SendHeaders = Readonly<Record<string, string | readonly string[]>>

/** What an adapter does with a request once the cache decided. */
export type Delivery =
  /** Send this response (a body of `undefined` for a 304). */
  | {
      readonly kind: 'send'
      readonly status: number
      readonly headers: SendHeaders
      readonly body: string | Uint8Array | undefined
      /** Seconds since the response was stored, for an `Age` header (HIT and STALE only). */
      readonly age: number | undefined
      readonly cache: CacheStatus
    }
  /** Run the handler as if there were no cache; nothing is captured or stored. */
  | { readonly kind: 'proceed'; readonly cache: 'PASS' | 'BYPASS' }
  /** The handler's own response goes out as it is (it ran for this request and was not captured). */
  | { readonly kind: 'untouched' }

/** A route's settings for one request, resolved by the adapter. */
export interface RouteSettings {
  /** Fresh lifetime in ms (the cache's `ttl` when absent; a response's `s-maxage` wins over both). */
  readonly ttl?: number | undefined
  /** Stale-while-revalidate window in ms after the fresh lifetime (the cache's when absent). */
  readonly staleWhileRevalidate?: number | undefined
  /** Tags of the stored response, so `invalidateByTag` purges the pages a write touched. */
  readonly tags?: readonly string[] | undefined
}
