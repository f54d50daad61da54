import { coarseNow } from './coarse-clock'

/**
 * What every layer stores for a key. `expiresAt` is a wall-clock epoch in milliseconds (0 = no expiry);
 * it only bounds how long a copy may live, it never orders events across machines.
 * Layers that serialise entries write `ENTRY_FORMAT_VERSION` next to it so later fields
 * (stale windows, versions) can be added without a format break.
 */
export interface CacheEntry<T = unknown> {
  readonly value: T
  /** When layers drop the entry (epoch ms, 0 = never): the fresh TTL plus any stale window. */
  readonly expiresAt: number
  readonly tags?: readonly string[] | undefined
  /** When the value turns stale (epoch ms). Absent: fresh until `expiresAt`. */
  readonly freshUntil?: number | undefined
  /** When the value was produced (epoch ms); orders refreshes and drives refresh-ahead. */
  readonly createdAt?: number | undefined
  /** How long the loader took (ms); the "delta" of probabilistic early expiration. */
  readonly loadMs?: number | undefined
  /**
   * Set only on entries written by negative caching: `true` for a cached "nothing there" (reads answer
   * undefined), `false` for a cached `null` from the loader. Either way the read counts a negative hit.
   */
  readonly absent?: boolean | undefined
  /**
   * Set by a soft invalidation (`expire`, `expireByTag`, `expireByPrefix`): the entry is stale whatever the
   * reader's clock says; `freshUntil` (when it was expired, at the latest) starts its stale windows.
   */
  readonly expired?: true | undefined
}

/** The optional fields above, as layers that serialise entries store them. */
export type EntryMeta = Pick<CacheEntry, 'freshUntil' | 'createdAt' | 'loadMs' | 'absent' | 'expired'>

export const ENTRY_FORMAT_VERSION = 1

export function createEntry<T>(value: T, ttlMs: number | undefined, tags?: readonly string[]): CacheEntry<T> {
  return { value, expiresAt: ttlMs === undefined ? 0 : Date.now() + ttlMs, tags }
}

export function isExpired(entry: CacheEntry, now: number): boolean {
  return entry.expiresAt !== 0 && entry.expiresAt <= now
}

/** Fresh entries are served as they are; reading the (coarse) clock only when the entry has a soft expiry. */
export function isFresh(entry: CacheEntry): boolean {
  return entry.freshUntil === undefined || (entry.freshUntil > coarseNow() && entry.expired !== true)
}

/** Copies the optional fields of `from` (for layers that rebuild an entry around a copied value). */
export function entryMeta(from: CacheEntry): EntryMeta | undefined {
  if (
    from.freshUntil === undefined &&
    from.createdAt === undefined &&
    from.loadMs === undefined &&
    from.absent === undefined &&
    from.expired === undefined
  ) {
    return undefined
  }
  return {
    freshUntil: from.freshUntil,
    createdAt: from.createdAt,
    loadMs: from.loadMs,
    absent: from.absent,
    expired: from.expired,
  }
}

/** Milliseconds the entry still has; `undefined` when it never expires, 0 when it already has. */
export function remainingTtl(entry: CacheEntry, now: number): number | undefined {
  if (entry.expiresAt === 0) return undefined
  return Math.max(0, entry.expiresAt - now)
}

/** The TTL a layer applies: the entry's own lifetime capped by the layer's bound (either may be absent). */
export function effectiveTtl(entryTtl: number | undefined, layerTtl: number | undefined): number | undefined {
  if (entryTtl === undefined) return layerTtl
  if (layerTtl === undefined) return entryTtl
  return entryTtl < layerTtl ? entryTtl : layerTtl
}
