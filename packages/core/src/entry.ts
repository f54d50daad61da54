/**
 * What every layer stores for a key. `expiresAt` is a wall-clock epoch in milliseconds (0 = no expiry);
 * it only bounds how long a copy may live, it never orders events across machines.
 * Layers that serialise entries write `ENTRY_FORMAT_VERSION` next to it so later fields
 * (stale windows, versions) can be added without a format break.
 */
export interface CacheEntry<T = unknown> {
  readonly value: T
  readonly expiresAt: number
  readonly tags?: readonly string[] | undefined
}

export const ENTRY_FORMAT_VERSION = 1

export function createEntry<T>(value: T, ttlMs: number | undefined, tags?: readonly string[]): CacheEntry<T> {
  return { value, expiresAt: ttlMs === undefined ? 0 : Date.now() + ttlMs, tags }
}

export function isExpired(entry: CacheEntry, now: number): boolean {
  return entry.expiresAt !== 0 && entry.expiresAt <= now
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
