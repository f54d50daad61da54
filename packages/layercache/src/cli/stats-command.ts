import { DEPENDENCY_TAG, generationPrefix } from '@layercache/core'
import {
  generationKeyOf,
  type RedisClient,
  RedisLayer,
  TAG_SEPARATOR,
  tagSetPrefixOf,
} from '@layercache/layer-redis'
import { CACHE_OPTIONS, CACHE_USAGE, type CacheLocation, cacheLocationOf } from './cache-options'
import { jsonText, printable } from './cli-io'
import { CONNECTION_OPTIONS, CONNECTION_USAGE, connectionOf } from './connection-options'
import { recordedGeneration } from './generation-option'
import { hasIndex, type IndexView, lexRange, readIndexView, sourcesOf } from './index-view'
import { parseOptions, redisCommand } from './redis-command'
import { redactUrl } from './redis-connection'
import { mastersOf, type NodeInfo, nodeInfo } from './redis-info'
import { countEntries, scanMasters, tagSetPattern } from './scan-keys'

const USAGE = `Usage: layercache stats --redis <url> [--key-prefix <p>] [options]

What a layercache deployment holds in Redis under a key prefix: its cache keys (counted in the sharded
known-keys index; with no index, by SCAN of the keys under the prefix that hold layercache entries, and
it says so and how many others it met), its tags, the index layout, the shared generation, the
dependency mark, and the Redis version, mode and memory (INFO). Reads only. Without --key-prefix it
looks at the cache whose RedisLayer has no prefix: pass the prefix your RedisLayer uses.

Options:
${CACHE_USAGE}
  --json                     print the statistics as JSON
${CONNECTION_USAGE}
  -h, --help                 show this help

Examples:
  layercache stats --redis redis://127.0.0.1:6379 --key-prefix myapp
  layercache stats --redis rediss://cache.internal:6380 --key-prefix myapp:cache \\
    --tag-index-prefix myapp:tags --json
`

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  ...CACHE_OPTIONS,
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

const HSCAN_COUNT = 1000

interface TagCount {
  readonly count: number
  /** Keys something depends on (`dependsOn`), which the stack stores as tags of their own. */
  readonly dependencies: number
  readonly source: 'index' | 'scan'
}

function tagCount(tags: Iterable<string>, source: 'index' | 'scan'): TagCount {
  let count = 0
  let dependencies = 0
  for (const tag of tags) {
    if (tag.startsWith(DEPENDENCY_TAG)) dependencies++
    else count++
  }
  return { count, dependencies, source }
}

export interface CacheStats {
  readonly keyPrefix: string
  readonly redis: {
    readonly mode: 'standalone' | 'cluster'
    readonly version: string
    readonly nodes: readonly NodeInfo[]
    readonly usedMemory: number
  }
  readonly keys: {
    /** Cache keys under the prefix (index entries: a key that expired in the last minute may count). */
    readonly count: number
    readonly source: 'index' | 'scan'
    /**
     * Keys under the prefix (besides the cache's own `~` keys) that are not layercache entries: another
     * application's, or a prefix that is not the cache's. Counted by SCAN only (null with an index).
     */
    readonly otherKeys: number | null
    /** Index entries whose key expired and that wait for collection (own index only). */
    readonly expiredAwaitingCollection: number | null
    /** Keys of the current (or --generation) generation, when the stack has generations. */
    readonly inGeneration: { readonly generation: number; readonly count: number } | null
  }
  readonly tags: TagCount
  readonly index: {
    readonly prefix: string
    readonly shared: boolean
    readonly layout: readonly number[] | null
    readonly unreadableLayout: string | null
    readonly shards: number
    readonly shardKeys: string
    readonly legacySingleSet: string | null
  }
  readonly generation: { readonly key: string; readonly current: number | null }
  readonly dependencyMark: boolean
}

function parse(args: readonly string[], env: NodeJS.ProcessEnv) {
  const values = parseOptions(args, OPTIONS)
  if (values.help) return { help: true as const }
  return {
    help: false as const,
    ...connectionOf(values, env),
    location: cacheLocationOf(values),
    json: values.json === true,
  }
}

async function sum(values: Promise<number>[]): Promise<number> {
  return (await Promise.all(values)).reduce((a, b) => a + b, 0)
}

/** Cache keys under `keyPrefix + within`, and (by SCAN only) how many other keys are there. */
async function countKeys(
  client: RedisClient,
  view: IndexView,
  keyPrefix: string,
  within: string,
): Promise<{ entries: number; others: number | null }> {
  if (hasIndex(view)) {
    const [from, to] = lexRange(keyPrefix + within)
    const entries = await sum(sourcesOf(view).map((shard) => client.zlexcount(shard.keysKey, from, to)))
    return { entries, others: null }
  }
  return countEntries(client, keyPrefix, within)
}

/** Distinct tags of the indexed keys under the prefix (the index records each key's tags). */
async function countTags(client: RedisClient, view: IndexView, keyPrefix: string): Promise<TagCount> {
  if (!hasIndex(view)) {
    const sets: string[] = []
    const skip = tagSetPrefixOf(keyPrefix).length
    await scanMasters(client, tagSetPattern(keyPrefix), (keys) => {
      for (const key of keys) sets.push(key.slice(skip))
      return undefined
    })
    return tagCount(sets, 'scan')
  }
  const tags = new Set<string>()
  for (const shard of sourcesOf(view)) {
    let cursor = '0'
    do {
      const [next, pairs] = await client.hscan(shard.tagsKey, cursor, 'COUNT', HSCAN_COUNT)
      cursor = next
      for (let i = 0; i + 1 < pairs.length; i += 2) {
        if (!pairs[i]!.startsWith(keyPrefix)) continue
        for (const tag of pairs[i + 1]!.split(TAG_SEPARATOR)) tags.add(tag)
      }
    } while (cursor !== '0')
  }
  return tagCount(tags, 'index')
}

export async function collectStats(client: RedisClient, location: CacheLocation): Promise<CacheStats> {
  const { keyPrefix, indexPrefix } = location
  const layer = new RedisLayer({ client, prefix: keyPrefix, commandTimeout: 10_000 })
  const [nodes, view, generation, dependencyMark] = await Promise.all([
    Promise.all(mastersOf(client).map(nodeInfo)),
    readIndexView(client, keyPrefix, indexPrefix),
    recordedGeneration(client, keyPrefix),
    layer.dependenciesMarked(),
  ])
  const indexed = hasIndex(view)
  const counted =
    location.generation === undefined
      ? generation
      : location.generation === 'current'
        ? (generation ?? 0)
        : location.generation
  const now = Date.now()
  const [count, tags, expired, inGeneration] = await Promise.all([
    countKeys(client, view, keyPrefix, ''),
    countTags(client, view, keyPrefix),
    indexed && !view.shared
      ? sum(sourcesOf(view).map((shard) => client.zcount(shard.expiryKey, '-inf', `(${now}`)))
      : undefined,
    counted === undefined ? undefined : countKeys(client, view, keyPrefix, generationPrefix(counted)),
  ])
  const shardKeys = view.shards.length === 0 ? '' : view.shards[0]!.keysKey.replace(/:0\}k$/, ':<s>}k')
  return {
    keyPrefix,
    redis: {
      mode: client.isCluster ? 'cluster' : 'standalone',
      version: [...new Set(nodes.map((node) => node.version))].join(', '),
      nodes,
      usedMemory: nodes.reduce((total, node) => total + node.usedMemory, 0),
    },
    keys: {
      count: count.entries,
      source: indexed ? 'index' : 'scan',
      otherKeys: count.others,
      expiredAwaitingCollection: expired ?? null,
      inGeneration: counted === undefined ? null : { generation: counted, count: inGeneration!.entries },
    },
    tags,
    index: {
      prefix: view.indexPrefix,
      shared: view.shared,
      layout: view.layout ?? null,
      unreadableLayout: view.unreadableLayout ?? null,
      shards: view.shards.length,
      shardKeys,
      legacySingleSet: view.legacy?.keysKey ?? null,
    },
    generation: { key: generationKeyOf(keyPrefix), current: generation ?? null },
    dependencyMark,
  }
}

function describe(stats: CacheStats, url: string): string {
  const { redis, keys, tags, index } = stats
  const lines = [`layercache stats: key prefix ${JSON.stringify(stats.keyPrefix)} at ${redactUrl(url)}`]
  lines.push(
    `redis: ${redis.version}, ${redis.mode}` +
      (redis.mode === 'cluster' ? ` (${redis.nodes.length} masters)` : ''),
  )
  for (const node of redis.nodes) {
    const limit = node.maxmemory === 0 ? 'no maxmemory' : `maxmemory ${node.maxmemoryHuman}`
    const ratio = node.fragmentationRatio === undefined ? '' : `, fragmentation ${node.fragmentationRatio}`
    lines.push(
      `  ${node.address}: memory ${node.usedMemoryHuman} used (peak ${node.usedMemoryPeakHuman}), ` +
        `${limit}, policy ${node.maxmemoryPolicy}${ratio}; ${node.dbsize} keys in the database`,
    )
  }
  const others =
    keys.otherKeys === null || keys.otherKeys === 0 ? '' : `; ${keys.otherKeys} other keys there are not`
  const source =
    keys.source === 'index'
      ? 'counted in the known-keys index'
      : `no known-keys index: counted by SCAN of the keys under the prefix that hold layercache entries${others}`
  const expired =
    keys.expiredAwaitingCollection === null || keys.expiredAwaitingCollection === 0
      ? ''
      : `; ${keys.expiredAwaitingCollection} of them expired and wait for collection`
  lines.push(`keys: ${keys.count} (${source}${expired})`)
  if (keys.source === 'scan' && stats.keyPrefix === '') {
    lines.push('  no key index without a prefix: if your RedisLayer has a prefix, pass it with --key-prefix')
  }
  if (keys.inGeneration !== null) {
    lines.push(`  in generation ${keys.inGeneration.generation}: ${keys.inGeneration.count}`)
  }
  const dependencies = tags.dependencies === 0 ? '' : `; ${tags.dependencies} keys have dependents`
  lines.push(
    `tags: ${tags.count} ` +
      (tags.source === 'index' ? '(distinct tags of the indexed keys' : '(tag sets, by SCAN') +
      `${dependencies})`,
  )
  if (index.layout === null) {
    const unreadable =
      index.unreadableLayout === null
        ? ''
        : ` (layout record unreadable: ${printable(index.unreadableLayout)})`
    lines.push(`index: none recorded under ${JSON.stringify(index.prefix)}${unreadable}`)
  } else {
    const counts = index.layout.join(',')
    const resharding = index.layout.length > 1 ? ' (a re-shard is in progress)' : ''
    lines.push(
      `index: ${counts} shards${resharding} at ${index.shardKeys}` +
        (index.shared ? ' (a RedisTagIndex shared by other prefixes)' : ''),
    )
  }
  if (index.legacySingleSet !== null) {
    lines.push(
      `  legacy single-set index at ${index.legacySingleSet}: move it with layercache migrate-tag-index`,
    )
  }
  lines.push(
    stats.generation.current === null
      ? `generation: none recorded (${stats.generation.key})`
      : `generation: ${stats.generation.current} (${stats.generation.key})`,
  )
  lines.push(
    stats.dependencyMark
      ? 'dependency mark: set (entries with dependsOn were written; invalidations cascade)'
      : 'dependency mark: not set (no entry with dependsOn yet)',
  )
  return `${lines.join('\n')}\n`
}

export const statsCommand = redisCommand({
  name: 'stats',
  summary: 'what a cache holds in Redis: keys, tags, index layout, generation, memory, version',
  usage: USAGE,
  parse,
  work: async (parsed, client) => {
    const stats = await collectStats(client, parsed.location)
    return parsed.json ? jsonText(stats) : describe(stats, parsed.url)
  },
})
