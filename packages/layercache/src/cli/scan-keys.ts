import { type RedisClient, scanPattern, tagSetPrefixOf } from '@layercache/layer-redis'
import { mastersOf } from './redis-info'

const SCAN_COUNT = 1000
/** Keys under a layer prefix that start with '~' after it are the layer's own (indexes, tags, logs). */
const INTERNAL = '~'

/**
 * Every cache key under `keyPrefix + within` by SCAN on every master (used when there is no known-keys
 * index: `keyIndex: false`, or nothing written yet), a batch at a time; the layer's own keys are
 * skipped. `visit` gets full keys and returns false to stop.
 */
export async function scanCacheKeys(
  client: RedisClient,
  keyPrefix: string,
  within: string,
  visit: (fulls: string[]) => boolean | undefined,
): Promise<void> {
  for (const node of mastersOf(client)) {
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(
        cursor,
        'MATCH',
        scanPattern(keyPrefix + within),
        'COUNT',
        SCAN_COUNT,
      )
      cursor = next
      const cache = keys.filter((key) => !key.startsWith(INTERNAL, keyPrefix.length))
      if (cache.length > 0 && visit(cache) === false) return
    } while (cursor !== '0')
  }
}

/** SCAN MATCH pattern of the tag sets of a layer prefix (RedisTagStore: `<prefix>~t:<tag>`). */
export function tagSetPattern(keyPrefix: string): string {
  return scanPattern(tagSetPrefixOf(keyPrefix))
}
