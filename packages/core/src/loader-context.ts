import { assertTags, assertTtl } from './validation'

/** What a loader receives: the key, the stale value it may replace, an abort signal, and ways to adjust the write. */
export interface LoaderContext<T = unknown> {
  /** The key as the caller passed it (without namespace prefixes). */
  readonly key: string
  /** The stale value being refreshed, when there is one. */
  readonly stale: T | undefined
  /**
   * Aborted when the hard timeout fires, when `close()` abandons the load, or when every caller waiting
   * for it aborted its own `signal`: stop work whose result nobody will read.
   */
  readonly signal: AbortSignal
  /**
   * With a singleFlightCoordinator: the token of the fleet-wide lease this load holds, larger for every
   * later holder of the key. Store it with database writes the loader makes and refuse writes carrying a
   * smaller one, so a holder that lost its lease cannot overwrite a newer holder's work. Undefined when
   * the load runs without a lease (no coordinator, refresh(), or the coordinator failing).
   */
  readonly fencingToken: number | undefined
  /** Cache the result for this long instead (e.g. from an HTTP Cache-Control or a row's own expiry). */
  setTtl(ttl: number): void
  /** Tag the result from what it contains. */
  setTags(tags: readonly string[]): void
}

export class LoadContext<T> implements LoaderContext<T> {
  ttl: number | undefined
  tags: readonly string[] | undefined

  constructor(
    readonly key: string,
    readonly stale: T | undefined,
    ttl: number | undefined,
    tags: readonly string[] | undefined,
    readonly fencingToken: number | undefined,
    /** Aborted by the hard timeout, by close() abandoning the load, or once every waiter gave up. */
    readonly controller: AbortController = new AbortController(),
  ) {
    this.ttl = ttl
    this.tags = tags
  }

  get signal(): AbortSignal {
    return this.controller.signal
  }

  setTtl(ttl: number): void {
    this.ttl = assertTtl(ttl, 'loader ttl')
  }

  setTags(tags: readonly string[]): void {
    this.tags = assertTags(tags)
  }
}
