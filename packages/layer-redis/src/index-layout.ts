import { InvalidOptionError } from '@layercache/core'
import { fnv1aBytes, fnv1aUtf8 } from './key-hash'

export const DEFAULT_KNOWN_KEYS_SHARDS = 16
export const MAX_KNOWN_KEYS_SHARDS = 1024
/** Expiry score of a key that never expires (far beyond any epoch-ms expiry, still an exact double). */
export const NEVER = 8.64e15

/** Joins a key's tags in a shard's `kt` hash: no stored tag contains a NUL (control characters are refused). */
export const TAG_SEPARATOR = '\u0000'

/** One shard of the known-keys index: three structures under one hash tag, so one script may touch all. */
export interface IndexShard {
  /** Every key of the shard, all scores 0, ordered for ZRANGEBYLEX prefix ranges. */
  readonly keysKey: string
  /** The same keys scored by expiry, for garbage collection. */
  readonly expiryKey: string
  /** Key → its tags (joined by NUL), so a delete can find its tag memberships. */
  readonly tagsKey: string
  /**
   * Keys an invalidation took out of the index and has not unlinked yet (scored by when, for collection):
   * every other invalidation reads them too, so none resolves while a key it covers is still there.
   */
  readonly pendingKey: string
}

/** The hash tag of everything a prefix keeps for itself ('' has none of its own). */
export function slotTagOf(prefix: string): string {
  return prefix === '' ? '~' : prefix
}

function shardAt(prefix: string, tag: string): IndexShard {
  return {
    keysKey: `${prefix}~{${tag}}k`,
    expiryKey: `${prefix}~{${tag}}kx`,
    tagsKey: `${prefix}~{${tag}}kt`,
    pendingKey: `${prefix}~{${tag}}kp`,
  }
}

/** The single-set index of versions before sharding: still read (and cleaned) until it is migrated. */
export function legacyShardOf(prefix: string): IndexShard {
  return shardAt(prefix, slotTagOf(prefix))
}

/** Shard `index` of `prefix`: `P~{P:<index>}k`, `…kx`, `…kt`. Each shard has a slot of its own. */
export function shardOf(prefix: string, index: number): IndexShard {
  return shardAt(prefix, `${slotTagOf(prefix)}:${index}`)
}

export function shardsOf(prefix: string, count: number): IndexShard[] {
  return Array.from({ length: count }, (_, index) => shardOf(prefix, index))
}

/** Where the shard counts are recorded, so every instance sharing the index uses the same ones. */
export function layoutKeyOf(prefix: string): string {
  return `${prefix}~{${slotTagOf(prefix)}}layout`
}

/** The shard of a full key: FNV-1a of its UTF-8 bytes modulo the shard count. */
export function shardIndexOf(full: string | Uint8Array, count: number): number {
  if (count === 1) return 0
  return (typeof full === 'string' ? fnv1aUtf8(full) : fnv1aBytes(full)) % count
}

export function assertShardCount(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_KNOWN_KEYS_SHARDS) {
    throw new InvalidOptionError(
      `Invalid ${what} ${String(value)}: expected a whole number from 1 to ${MAX_KNOWN_KEYS_SHARDS}`,
    )
  }
  return value
}

/**
 * The recorded layout: shard counts separated by commas. New entries go to the first; entries may still
 * sit in the others (a re-shard in progress), which are read, cleaned and collected but never written.
 * Undefined when the text is not such a list.
 */
export function parseLayout(text: string | null): number[] | undefined {
  if (text === null) return undefined
  const counts = text.split(',').map(Number)
  const valid = counts.every((n) => Number.isInteger(n) && n >= 1 && n <= MAX_KNOWN_KEYS_SHARDS)
  return valid && new Set(counts).size === counts.length ? counts : undefined
}

export function formatLayout(counts: readonly number[]): string {
  return counts.join(',')
}
