import { CacheStack } from '@layercache/core'
import { vi } from 'vitest'
import { RedisLayer } from '../../src'
import { legacyShardOf, NEVER } from '../../src/index-layout'

export interface LegacyItem {
  readonly key: string
  readonly tags?: string[]
  readonly ttl?: number
}

/**
 * Writes values (with their tag memberships) under `prefix` and indexes them the way versions before
 * sharding did: every key in the single set `P~{P}k`, its expiry in `P~{P}kx`, its tags in `P~{P}kt`.
 */
export async function writeLegacy(
  client: RedisLayer['client'],
  prefix: string,
  items: readonly LegacyItem[],
): Promise<void> {
  const plain = new RedisLayer({ client, prefix, keyIndex: false })
  const stack = new CacheStack([plain])
  const legacy = legacyShardOf(plain.prefix)
  for (const { key, tags, ttl } of items) {
    await stack.set(key, `legacy:${key}`, { tags, ttl })
    const full = plain.prefix + key
    await client.zadd(legacy.keysKey, 0, full)
    await client.zadd(legacy.expiryKey, ttl === undefined ? NEVER : Date.now() + ttl, full)
    if (tags !== undefined) await client.hset(legacy.tagsKey, full, tags.join('\u0000'))
  }
}

/** Records process warnings with `code` from now on (they still reach process.emitWarning). */
export function watchWarnings(code: string): () => string[] {
  const spy = vi.spyOn(process, 'emitWarning')
  return () =>
    spy.mock.calls
      .filter(([, options]) => (options as { code?: string } | undefined)?.code === code)
      .map(([message]) => String(message))
}
