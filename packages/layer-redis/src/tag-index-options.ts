import {
  assertKnownOptions,
  assertPositiveInteger,
  checkClientReplies,
  InvalidOptionError,
} from '@layercache/core'
import type { Cluster, Redis } from 'ioredis'
import { assertShardCount, DEFAULT_KNOWN_KEYS_SHARDS } from './index-layout'
import { normalizePrefix } from './key-prefix'

/** Entries read per shard and page of an index range when nothing else is configured. */
export const DEFAULT_SCAN_COUNT = 100

export interface RedisTagIndexOptions {
  /** The ioredis client of the RedisLayers that use the index (the same object). */
  readonly client: Redis | Cluster
  /** Where the index lives in Redis (its own key prefix; a trailing ':' is added when missing). */
  readonly prefix: string
  /** Entries read per shard and page while an invalidation ranges over the index. Default 100. */
  readonly scanCount?: number
  /** Shards of the known-keys index (1 to 1024). Default 16. Recorded in Redis by the first user. */
  readonly knownKeysShards?: number
}

/** A shared key and tag index, as RedisLayer.useTagIndex takes it (RedisTagIndex is one). */
export interface TagIndexConfig {
  readonly client: Redis | Cluster
  /** Normalised (see normalizePrefix). */
  readonly prefix: string
  readonly scanCount: number
  readonly knownKeysShards: number
}

const OPTIONS = ['client', 'prefix', 'scanCount', 'knownKeysShards'] as const

/** Validates RedisTagIndex options (or anything handed to useTagIndex); throws InvalidOptionError. */
export function readTagIndexOptions(options: unknown, where: string): TagIndexConfig {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError(`${where}: expected a RedisTagIndex, got ${typeof options}`)
  }
  const given = options as Partial<RedisTagIndexOptions>
  // A RedisTagIndex instance carries exactly these fields; a plain options object must not carry others.
  if (Object.getPrototypeOf(options) === Object.prototype) assertKnownOptions(options, OPTIONS, where)
  const client = given.client
  if (!client || typeof client !== 'object' || typeof client.get !== 'function') {
    throw new InvalidOptionError(`${where}: \`client\` must be an ioredis Redis or Cluster instance`)
  }
  checkClientReplies(client, where)
  if (typeof given.prefix !== 'string' || given.prefix === '') {
    throw new InvalidOptionError(
      `${where}: \`prefix\` must be a non-empty string (the index's own place in Redis)`,
    )
  }
  return {
    client,
    prefix: normalizePrefix(given.prefix),
    scanCount: assertPositiveInteger(given.scanCount, `${where} scanCount`) ?? DEFAULT_SCAN_COUNT,
    knownKeysShards:
      assertShardCount(given.knownKeysShards, `${where} knownKeysShards`) ?? DEFAULT_KNOWN_KEYS_SHARDS,
  }
}
