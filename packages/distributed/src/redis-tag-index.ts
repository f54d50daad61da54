import { type RedisTagIndexOptions, readTagIndexOptions, type TagIndexConfig } from '@layercache/layer-redis'
import type { Cluster, Redis } from 'ioredis'

export type { RedisTagIndexOptions } from '@layercache/layer-redis'

/**
 * Where the key and tag index that every instance shares lives in Redis: under its own prefix (instead of
 * each RedisLayer's), with `scanCount` entries per shard and page of an index range, in `knownKeysShards`
 * shards (default 16) spread over a Cluster by a hash of the key. Pass it as the CacheStack `tagIndex`
 * option; the stack hands it to its RedisLayers, which must use the same client object.
 *
 * The shard count is recorded in Redis by the first instance (`<prefix>~{<prefix>}layout`); an instance
 * configured with another count uses the recorded one and warns. Change it, or move an index of an
 * earlier version (one single set), with `layercache migrate-tag-index` (see docs/distributed.md).
 */
export class RedisTagIndex implements TagIndexConfig {
  readonly client: Redis | Cluster
  /** Normalised: a trailing ':' is added when missing. */
  readonly prefix: string
  readonly scanCount: number
  readonly knownKeysShards: number

  constructor(options: RedisTagIndexOptions) {
    const config = readTagIndexOptions(options, 'RedisTagIndex')
    this.client = config.client
    this.prefix = config.prefix
    this.scanCount = config.scanCount
    this.knownKeysShards = config.knownKeysShards
  }
}
