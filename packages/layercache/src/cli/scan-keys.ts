import { type RedisClient, scanPattern, tagSetPrefixOf } from '@layercache/layer-redis'
import { mastersOf } from './redis-info'

const SCAN_COUNT = 1000
/** Keys under a layer prefix that start with '~' after it are the layer's own (indexes, tags, logs). */
const INTERNAL = '~'

/** Every key matching `pattern`, by SCAN on every master, a batch at a time; `visit` returns false to stop. */
export async function scanMasters(
  client: RedisClient,
  pattern: string,
  visit: (keys: string[]) => boolean | undefined,
): Promise<void> {
  for (const node of mastersOf(client)) {
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT)
      cursor = next
      if (keys.length > 0 && visit(keys) === false) return
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
  visit: (fulls: string[]) => boolean | undefined,
): Promise<void> {
  return scanMasters(client, scanPattern(keyPrefix + within), (keys) => {
    const cache = keys.filter((key) => !key.startsWith(INTERNAL, keyPrefix.length))
    return cache.length > 0 ? visit(cache) : undefined
  })
}

/** SCAN MATCH pattern of the tag sets of a layer prefix (RedisTagStore: `<prefix>~t:<tag>`). */
export function tagSetPattern(keyPrefix: string): string {
  return scanPattern(tagSetPrefixOf(keyPrefix))
}
