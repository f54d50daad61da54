import type { CacheEntry } from './entry'
import type { KeyMatch, TagMatchMode } from './invalidation'

export type MaybePromise<T> = T | Promise<T>

export interface LayerWriteOptions {
  /** Lifetime of the entry in milliseconds; the layer caps it with its own `ttl`. Absent: layer default. */
  readonly ttl?: number | undefined
  /**
   * True when nothing outside the cache holds a reference to `entry.value` (it was just deserialised),
   * so an in-process layer may protect it without copying first.
   */
  readonly ownsValue?: boolean | undefined
  /**
   * Checked right before the write is issued, after any asynchronous encoding. Returning false drops the
   * write: an invalidation landed meanwhile and the value must not come back (no resurrection).
   */
  readonly stillValid?: (() => boolean) | undefined
  /**
   * What each shared layer handed out (`fenceSnapshot`, by layer name) when the load behind this write
   * began; a layer that sees an invalidation covering the key since then refuses the write with
   * WriteFencedError.
   */
  readonly fences?: ReadonlyMap<string, unknown> | undefined
}

export interface LayerWrite {
  readonly key: string
  readonly entry: CacheEntry
  readonly options?: LayerWriteOptions | undefined
}

/**
 * Phase two of a write: performs it. Phase one (`prepareWrites`) already validated and encoded
 * everything, so a commit can only fail for I/O reasons.
 */
export type CommitWrite = () => MaybePromise<void>

/**
 * The contract every cache layer implements. Keys arrive fully qualified (namespace included).
 * Remote layers return promises and must bound every call with a timeout, rejecting with
 * LayerUnavailableError / LayerTimeoutError; local layers answer synchronously.
 */
export interface CacheLayer {
  /** Unique within a stack; used in stats and events. */
  readonly name: string
  /** True for in-process layers whose methods return synchronously (lets the stack skip awaits). */
  readonly local: boolean
  /** The layer's bound on entry lifetime in milliseconds, if it has one. */
  readonly ttl?: number | undefined
  /**
   * The live entry, or undefined. Expiry is the layer's job (lru-cache's TTL, Redis's PX): the stack does
   * not second-guess it with its own clock, which may disagree with the writer's host.
   */
  get(key: string): MaybePromise<CacheEntry | undefined>
  getMany(keys: readonly string[]): MaybePromise<(CacheEntry | undefined)[]>
  /**
   * Validates and encodes `writes` synchronously without side effects, throwing a typed error on bad
   * input (unserialisable, oversized). The stack prepares on every layer before committing on any, so a
   * rejected write changes nothing anywhere.
   */
  prepareWrites(writes: readonly LayerWrite[]): CommitWrite
  delete(key: string): MaybePromise<void>
  deleteMany(keys: readonly string[]): MaybePromise<void>
  has(key: string): MaybePromise<boolean>
  /** Removes every entry this layer holds for this stack (a Redis layer only touches its prefix). */
  clear(): MaybePromise<void>
  /**
   * Removes every entry written with any (or all) of `tags` and returns their keys. Layers that record
   * the tags of what they store implement it; the stack also deletes the returned keys everywhere.
   */
  invalidateTags?(tags: readonly string[], mode: TagMatchMode): MaybePromise<readonly string[]>
  /**
   * Removes every entry whose key `match` covers and returns their keys. Layers shared between
   * instances also make writes of loads that began earlier refuse themselves (see `fenceSnapshot`).
   */
  invalidateKeys?(match: KeyMatch, options?: InvalidateKeysOptions): MaybePromise<readonly string[]>
  /**
   * A shared layer's record of "what had been invalidated" as a load of `key` starts (the key itself, its
   * `tags`, group invalidations): passed back in LayerWriteOptions.fences, it lets the layer refuse a write-back that
   * an invalidation on any instance has overtaken.
   */
  fenceSnapshot?(key: string, tags: readonly string[] | undefined): Promise<unknown>
  /**
   * Soft invalidation: marks the entries of `keys` stale in place (see `markedStale`), keeping their TTL,
   * and returns the keys it held. A shared layer does it atomically per key, refuses write-backs of loads
   * of those keys that began earlier (as a delete does), and never writes a key that is gone. Without it
   * the stack removes the keys instead.
   */
  expireKeys?(keys: readonly string[]): MaybePromise<readonly string[]>
  /** Soft invalidation of the entries carrying any (or all) of `tags`; without it the stack removes them. */
  expireTags?(tags: readonly string[], mode: TagMatchMode): MaybePromise<readonly string[]>
  /** Soft invalidation of the entries whose key `match` covers; without it the stack removes them. */
  expireMatching?(match: KeyMatch): MaybePromise<readonly string[]>
  /** A named counter shared by every instance (0 when never incremented). */
  readCounter?(name: string): Promise<number>
  incrementCounter?(name: string): Promise<number>
  /** Records, for every instance, that entries with `dependsOn` exist (so invalidations must cascade). */
  markDependencies?(): Promise<void>
  /** Whether any instance ever recorded `markDependencies`. */
  dependenciesMarked?(): Promise<boolean>
  /** The generation shared by every instance, first raised to `atLeast` if it is lower. */
  sharedGeneration?(atLeast: number): Promise<number>
  /** Atomically moves the shared generation to max(current, atLeast) + 1 and returns it. */
  bumpSharedGeneration?(atLeast: number): Promise<number>
  /**
   * Keeps the layer's shared key and tag index where `tagIndex` says (the CacheStack `tagIndex` option,
   * e.g. a RedisTagIndex, handed to every layer that has this method). Called before the layer's first
   * operation; throws InvalidOptionError for an index the layer cannot use.
   */
  useTagIndex?(tagIndex: unknown): void
}

export interface InvalidateKeysOptions {
  /** Keys removed per step; the layer yields between steps so a large removal never blocks its store. */
  readonly batchSize?: number
}

/** An in-process layer: same contract, synchronous answers. */
export interface LocalCacheLayer extends CacheLayer {
  readonly local: true
  get(key: string): CacheEntry | undefined
  /**
   * The hot path of a hit: undefined when nothing live is held, else either the entry (as `get` answers
   * it) or the bare value of a plain entry (fresh, not negative, nothing else to know), told apart by
   * `isEntry`. Lets a layer keep plain entries as their value alone, and answer them without building an
   * entry per read.
   */
  peek(key: string): unknown
  /** Whether `found`, an answer of `peek`, is an entry (else it is a bare value). */
  isEntry(found: unknown): found is CacheEntry
  /**
   * A resolved promise of `entry.value`, for a hit on an entry `peek` answered with. The layer may keep it
   * with the entry and hand the same (frozen) promise to every reader: a hit then allocates nothing and
   * skips resolving a promise with an object, which looks up a `then` on it.
   */
  resolved(entry: CacheEntry): Promise<unknown>
  getMany(keys: readonly string[]): (CacheEntry | undefined)[]
  prepareWrites(writes: readonly LayerWrite[]): () => void
  delete(key: string): void
  deleteMany(keys: readonly string[]): void
  has(key: string): boolean
  clear(): void
}

export function isLocalLayer(layer: CacheLayer): layer is LocalCacheLayer {
  return layer.local
}
