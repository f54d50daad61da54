import {
  ENTRY_HEAD_BYTES,
  looksLikeEntry,
  type RedisClient,
  scanPattern,
  tagSetPrefixOf,
} from '@layercache/layer-redis'
import type { Redis } from 'ioredis'
import { mastersOf } from './redis-info'

const SCAN_COUNT = 1000
/** Keys under a layer prefix that start with '~' after it are the layer's own (indexes, tags, logs). */
const INTERNAL = '~'

/**
 * Every key matching `pattern`, by SCAN on every master (`node` holds the batch's keys), a batch at a
 * time; `visit` returns (or resolves to) false to stop.
 */
export async function scanMasters(
  client: RedisClient,
  pattern: string,
  visit: (keys: string[], node: Redis) => boolean | undefined | Promise<boolean | undefined>,
): Promise<void> {
  for (const node of mastersOf(client)) {
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT)
      cursor = next
      if (keys.length > 0 && (await visit(keys, node)) === false) return
    } while (cursor !== '0')
  }
}

/**
 * Every cache key under `keyPrefix + within` by SCAN on every master (used when there is no known-keys
 * index: `keyIndex: false`, or nothing written yet), a batch at a time; the layer's own keys are
 * skipped. `visit` gets full keys and returns false to stop.
 */
export function scanCacheKeys(
  client: RedisClient,
  keyPrefix: string,
  within: string,
  visit: (fulls: string[], node: Redis) => boolean | undefined | Promise<boolean | undefined>,
): Promise<void> {
  return scanMasters(client, scanPattern(keyPrefix + within), (keys, node) => {
    const cache = keys.filter((key) => !key.startsWith(INTERNAL, keyPrefix.length))
    return cache.length > 0 ? visit(cache, node) : undefined
  })
}

/**
 * The keys under `keyPrefix + within` (the layer's own `~` keys left out) by SCAN, split into those that
 * hold a layercache entry (looksLikeEntry on their first bytes) and the others: a database shared with
 * other applications, or a prefix that is not the cache's, holds keys that are not cache entries.
 */
export async function countEntries(
  client: RedisClient,
  keyPrefix: string,
  within: string,
): Promise<{ entries: number; others: number }> {
  let entries = 0
  let others = 0
  await scanCacheKeys(client, keyPrefix, within, async (fulls, node) => {
    const pipe = node.pipeline()
    for (const full of fulls) pipe.getrangeBuffer(full, 0, ENTRY_HEAD_BYTES - 1)
    const replies = (await pipe.exec()) ?? []
    for (const [error, head] of replies) {
      // WRONGTYPE: a hash, a set, a stream… under the prefix is not an entry either.
      if (error === null && Buffer.isBuffer(head) && looksLikeEntry(head)) entries++
      else others++
    }
    return undefined
  })
  return { entries, others }
}

/** SCAN MATCH pattern of the tag sets of a layer prefix (RedisTagStore: `<prefix>~t:<tag>`). */
export function tagSetPattern(keyPrefix: string): string {
  return scanPattern(tagSetPrefixOf(keyPrefix))
}
