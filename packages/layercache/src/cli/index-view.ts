import {
  type IndexShard,
  layoutKeyOf,
  legacyShardOf,
  parseLayout,
  type RedisClient,
  shardsOf,
} from '@layercache/layer-redis'

/**
 * The known-keys index of a RedisLayer prefix as Redis holds it, read without writing anything (a running
 * RedisLayer records its layout on first use; the CLI never does).
 */
export interface IndexView {
  /** Where the shards live: the RedisTagIndex prefix (--tag-index-prefix) or the layer prefix. */
  readonly indexPrefix: string
  /** The recorded shard counts (`P~{P}layout`), e.g. [16], or [4, 16] while a re-shard runs. */
  readonly layout: readonly number[] | undefined
  /** What `P~{P}layout` holds when it is not a list of shard counts. */
  readonly unreadableLayout: string | undefined
  /** Every shard of every recorded layout, once (shard s is the same keys in every layout that has it). */
  readonly shards: readonly IndexShard[]
  /** The single set of versions before sharding (under the layer prefix), when it has entries. */
  readonly legacy: IndexShard | undefined
  /** Whether the index is shared with other prefixes (a RedisTagIndex prefix of its own). */
  readonly shared: boolean
}

/** Whether there is an index to read: else keys are found with SCAN. */
export function hasIndex(view: IndexView): boolean {
  return view.shards.length > 0 || view.legacy !== undefined
}

export async function readIndexView(
  client: RedisClient,
  layerPrefix: string,
  indexPrefix: string,
): Promise<IndexView> {
  const legacy = legacyShardOf(layerPrefix)
  const own = indexPrefix === layerPrefix ? undefined : layoutKeyOf(layerPrefix)
  const [recorded, legacyCount, ownRecorded] = await Promise.all([
    client.get(layoutKeyOf(indexPrefix)),
    client.zcard(legacy.keysKey),
    own === undefined ? null : client.get(own),
  ])
  const layout = parseLayout(recorded)
  const byKey = new Map<string, IndexShard>()
  const add = (prefix: string, counts: readonly number[]) => {
    for (const count of counts) for (const shard of shardsOf(prefix, count)) byKey.set(shard.keysKey, shard)
  }
  add(indexPrefix, layout ?? [])
  // An index the layer prefix holds besides a RedisTagIndex's (see KnownKeysLayout): read until migrated.
  add(layerPrefix, parseLayout(ownRecorded) ?? [])
  return {
    indexPrefix,
    layout,
    unreadableLayout: recorded !== null && layout === undefined ? recorded : undefined,
    shards: [...byKey.values()],
    legacy: legacyCount > 0 ? legacy : undefined,
    shared: indexPrefix !== layerPrefix,
  }
}

/** The shards to read (and the legacy set when it has entries). */
export function sourcesOf(view: IndexView): IndexShard[] {
  return view.legacy === undefined ? [...view.shards] : [...view.shards, view.legacy]
}

/** ZRANGEBYLEX bounds of every member starting with `prefix` (members are full keys, all scores 0). */
export function lexRange(prefix: string): [string, Buffer] {
  return [`[${prefix}`, Buffer.concat([Buffer.from(`(${prefix}`), Buffer.from([0xff])])]
}
