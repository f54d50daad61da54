import type { KeyMatch, TagMatchMode } from './invalidation'

/**
 * What one instance tells the others to drop from their in-process layers. Keys and tags arrive as
 * stored (generation, namespace and tag scope included), so every instance applies them the same way.
 */
export type BusOperation =
  /** These keys were deleted, invalidated or (with broadcastL1Invalidation) overwritten. */
  | { readonly keys: readonly string[] }
  /** Entries carrying any / all of these tags were invalidated. */
  | { readonly tags: readonly string[]; readonly mode: TagMatchMode }
  /** Entries whose key `match` covers (prefix / pattern) were invalidated. */
  | { readonly match: KeyMatch }
  /** The shared generation moved to this number. */
  | { readonly generation: number }

/**
 * Why an instance can no longer vouch for its in-process layers: its subscription was (re)established
 * (messages sent before it were not heard), a sender's sequence skipped, or its heartbeat stopped coming
 * back (connection lost or silently cut).
 */
export type UnverifiedReason = 'subscribed' | 'reconnect' | 'gap' | 'heartbeat'

/** What a CacheStack hands to the bus to hear about other instances' invalidations. */
export interface BusListener {
  /**
   * Another instance's invalidations, in the order it made them. `sentAt`: the sender's wall clock when
   * it sent them (ms since the epoch), when the bus knows it: only for the bus-lag metric.
   */
  apply(operations: readonly BusOperation[], message?: { readonly sentAt?: number | undefined }): void
  /**
   * Messages may have been lost (connection dropped, a sender's sequence skipped, heartbeat missing): the
   * in-process layers must be treated as unverified and flushed.
   */
  unverified(reason: UnverifiedReason, detail: string): void
}

/**
 * Carries invalidations between instances (RedisInvalidationBus in @layercache/distributed). `publish`
 * resolves once the message left for every subscriber, and rejects when it could not be sent.
 */
export interface InvalidationBus {
  publish(operations: readonly BusOperation[]): Promise<void>
  /** Registers a listener; returns the function that removes it. */
  subscribe(listener: BusListener): () => void
  /** Stops the bus (timers, subscription); called by CacheStack.close(). Must be idempotent. */
  close?(): Promise<void> | void
}

/** The right to run a key's loader for the whole fleet, until released or lost. */
export interface SingleFlightLease {
  /** Monotonic per key across the fleet: a later holder always has a larger token. */
  readonly token: number
  /**
   * False once the lease may be gone: a renewal found another value (expired, maybe taken over), or no
   * renewal got through for a whole lease period. A loader finishing without it does not write back.
   */
  readonly held: boolean
  /**
   * Gives the lease up (compare-and-delete), hands `result` to waiting instances when the value was not
   * written to the shared layers, and wakes them. Resolves whether the lease was still held: when it was
   * not, another holder may have written meanwhile and the caller must drop what it wrote.
   */
  release(result?: SingleFlightResult): Promise<boolean>
}

/** A value produced by a loader that waiters cannot read from the cache (it was not cacheable). */
export interface SingleFlightResult {
  readonly value: unknown
}

/** What a waiter learns when the holder is done (or gone). */
export type SingleFlightWait =
  /** The holder released; re-read the cache, and use `result` when the value was not cacheable. */
  | { readonly kind: 'released'; readonly result?: SingleFlightResult }
  /**
   * The lease disappeared without a release (holder died), or the coordinator could not tell: try to take
   * over. `timedOut`: the holder is still loading after the coordinator's wait timeout; the stack then
   * loads without a lease rather than wait on.
   */
  | { readonly kind: 'retry'; readonly timedOut?: boolean }

/**
 * One loader per key across every instance (RedisSingleFlightCoordinator). A stack asks for a lease
 * after missing in every layer; the instance that gets it loads, the others wait to be woken. A
 * rejection from either method makes the stack load without a lease (counted in `coordinatorErrors`).
 */
export interface SingleFlightCoordinator {
  /** The lease when free, otherwise undefined (someone else is loading). */
  tryAcquire(key: string): Promise<SingleFlightLease | undefined>
  /** Waits until the current holder of `key` releases it or loses it; bounded by the coordinator's timeout. */
  wait(key: string): Promise<SingleFlightWait>
  /** Stops the coordinator (lease renewals, its subscriber); called by CacheStack.close(). Idempotent. */
  close?(): Promise<void> | void
}
