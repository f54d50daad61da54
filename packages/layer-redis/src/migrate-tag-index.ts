import { setTimeout as sleep } from 'node:timers/promises'
import {
  assertKnownOptions,
  assertPositiveInteger,
  checkClientReplies,
  InvalidOptionError,
  LayerCacheError,
} from '@layercache/core'
import type { Cluster, Redis } from 'ioredis'
import {
  assertShardCount,
  DEFAULT_KNOWN_KEYS_SHARDS,
  formatLayout,
  type IndexShard,
  layoutKeyOf,
  legacyShardOf,
  MAX_KNOWN_KEYS_SHARDS,
  NEVER,
  parseLayout,
  shardIndexOf,
  shardsOf,
} from './index-layout'
import { MOVE_IN_SCRIPT, REMOVE_MOVED_SCRIPT, shardScript } from './index-scripts'
import { normalizePrefix } from './key-prefix'
import { LAYOUT_RECHECK_MS } from './known-keys-layout'
import { execBySlotOwner } from './slot-pipelines'

export interface MigrateTagIndexOptions {
  readonly client: Redis | Cluster
  /** The index's prefix: a RedisTagIndex's `prefix`, or the RedisLayer's `prefix` when it has none. */
  readonly prefix: string
  /**
   * The RedisLayer prefix whose own index to move in: its single set (earlier versions) and, when it is
   * not `prefix`, its shards (instances that ran without the RedisTagIndex). Default: `prefix`.
   */
  readonly legacyPrefix?: string
  /** The shard count to end with (1 to 1024). Default: the recorded one, else 16. */
  readonly knownKeysShards?: number
  /** Count what would move, per shard, and change nothing. */
  readonly dryRun?: boolean
  /** Entries read, copied and removed per step. Default 500. */
  readonly batchSize?: number
  /**
   * A re-shard changes the recorded layout twice before it moves anything; after each change it waits
   * this long for running instances to see it (they look every 10 s). Default 30 000 ms; 0 when no
   * instance is running.
   */
  readonly settleMs?: number
  /** Called after every step; a throw stops the migration (run it again to resume). */
  readonly onProgress?: (progress: MigrateTagIndexProgress) => void | Promise<void>
}

const OPTIONS = [
  'client',
  'prefix',
  'legacyPrefix',
  'knownKeysShards',
  'dryRun',
  'batchSize',
  'settleMs',
  'onProgress',
] as const

export interface MigrateTagIndexProgress {
  /** The set being emptied (its lex set). */
  readonly source: string
  /** Entries of it moved (dry run: to move) so far. */
  readonly moved: number
  /** Entries still in it (some may already be in their place: a shard both layouts have). */
  readonly remaining: number
}

export interface MigrateTagIndexSource {
  /** Its lex set. */
  readonly key: string
  /**
   * `legacy`: the single set of earlier versions; `shard`: a shard of a layout being left; `layer-shard`:
   * a shard of an index under `legacyPrefix` (written without the RedisTagIndex).
   */
  readonly kind: 'legacy' | 'shard' | 'layer-shard'
  /** Entries it held when the run began. */
  readonly entries: number
}

export interface MigrateTagIndexReport {
  readonly dryRun: boolean
  /** Normalised. */
  readonly prefix: string
  readonly legacyPrefix: string
  /** Shard counts recorded before the run (empty: none yet). */
  readonly layoutBefore: readonly number[]
  /** Shard counts recorded after it (a dry run: what they would be). */
  readonly layoutAfter: readonly number[]
  readonly knownKeysShards: number
  /** Sets that held entries to move. */
  readonly sources: readonly MigrateTagIndexSource[]
  /** Entries moved (a dry run: to move) into each shard of the final layout. */
  readonly perShard: readonly number[]
  readonly moved: number
  /** Entries left behind because a writer re-indexed them meanwhile: run again. */
  readonly left: number
}

interface Plan {
  readonly target: number
  readonly before: readonly number[]
  /** Shard counts whose shards entries move out of. */
  readonly leaving: readonly number[]
}

const DEFAULT_BATCH = 500
const DEFAULT_SETTLE_MS = 3 * LAYOUT_RECHECK_MS

// Deletes the key only if it still holds ARGV[1].
const DELETE_IF_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

// Sets the recorded layout only if it still is what the migration read (ARGV[1], '' for none).
const SWAP_LAYOUT_SCRIPT = `
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1`

/**
 * Moves the entries of a known-keys index into the shards of `knownKeysShards`: from the single set of
 * earlier versions (`P~{P}k`, with its expiries and tags), and from the shards of another recorded count
 * (a re-shard). In batches: each entry is added to its new shard first and removed from the old one
 * after, so a crash in between leaves it in both (readers look in both; removal is idempotent); running
 * again resumes, since what is left in the old sets is what remains to do. A re-shard first records the
 * new count next to the old one, so running instances read both while entries move; it waits `settleMs`
 * after each change of the record for them to notice. Entries a writer re-indexed while they were being
 * copied stay where they are (counted in `left`): run again.
 */
export async function migrateTagIndex(options: MigrateTagIndexOptions): Promise<MigrateTagIndexReport> {
  assertKnownOptions(options, OPTIONS, 'migrateTagIndex')
  const { client } = options
  if (!client || typeof client !== 'object' || typeof client.get !== 'function') {
    throw new InvalidOptionError('migrateTagIndex: `client` must be an ioredis Redis or Cluster instance')
  }
  checkClientReplies(client, 'migrateTagIndex')
  if (typeof options.prefix !== 'string') {
    throw new InvalidOptionError('migrateTagIndex: `prefix` must be the index prefix (a string)')
  }
  const prefix = normalizePrefix(options.prefix)
  const legacyPrefix = options.legacyPrefix === undefined ? prefix : normalizePrefix(options.legacyPrefix)
  const wanted = assertShardCount(options.knownKeysShards, 'migrateTagIndex knownKeysShards')
  const batchSize = assertPositiveInteger(options.batchSize, 'migrateTagIndex batchSize') ?? DEFAULT_BATCH
  const settleMs = options.settleMs ?? DEFAULT_SETTLE_MS
  if (!Number.isInteger(settleMs) || settleMs < 0) {
    throw new InvalidOptionError(`Invalid migrateTagIndex settleMs ${String(settleMs)}: expected ms >= 0`)
  }
  if (options.dryRun !== undefined && typeof options.dryRun !== 'boolean') {
    throw new InvalidOptionError('migrateTagIndex: dryRun must be a boolean')
  }
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw new InvalidOptionError('migrateTagIndex: onProgress must be a function')
  }
  const dryRun = options.dryRun === true
  const layoutKey = layoutKeyOf(prefix)
  const recordedText = await client.get(layoutKey)
  const plan = planFor(recordedText, wanted, layoutKey)
  const { target } = plan
  const destinations = shardsOf(prefix, target)
  const sources: { shard: IndexShard; kind: MigrateTagIndexSource['kind'] }[] = [
    { shard: legacyShardOf(legacyPrefix), kind: 'legacy' },
  ]
  const add = (shards: readonly IndexShard[], kind: MigrateTagIndexSource['kind']) => {
    for (const shard of shards) {
      // A shard both layouts have is a source too (some of its entries move), never twice.
      if (sources.some((source) => source.shard.keysKey === shard.keysKey)) continue
      sources.push({ shard, kind })
    }
  }
  for (const count of plan.leaving) add(shardsOf(prefix, count), 'shard')
  // Shards beyond the target that still exist: an instance that missed a re-shard (cut off from Redis
  // for longer than the settle time) wrote there after it ended.
  const beyond = shardsOf(prefix, MAX_KNOWN_KEYS_SHARDS).slice(target)
  const found = await execBySlotOwner(
    client,
    beyond.map((shard) => ({ slotKey: shard.keysKey, add: (pipe) => pipe.exists(shard.keysKey) })),
  )
  add(
    beyond.filter((_, i) => found[i]![0] === 1),
    'shard',
  )
  // A sharded index under the layer prefix (instances ran without the RedisTagIndex) moves in too.
  const layerLayoutKey = legacyPrefix === prefix ? undefined : layoutKeyOf(legacyPrefix)
  const layerLayout = layerLayoutKey === undefined ? undefined : await client.get(layerLayoutKey)
  for (const count of parseLayout(layerLayout ?? null) ?? [])
    add(shardsOf(legacyPrefix, count), 'layer-shard')
  const sizes = await Promise.all(sources.map(({ shard }) => client.zcard(shard.keysKey)))
  const migration = new Migration(client, destinations, batchSize, dryRun, options.onProgress)
  const layoutAfter = [target]

  if (!dryRun) {
    await changeLayout(client, layoutKey, plan, settleMs)
  }
  for (const [i, { shard }] of sources.entries()) {
    if (sizes[i]! > 0) await migration.drain(shard)
  }
  if (!dryRun && formatLayout(plan.before) !== formatLayout(layoutAfter)) {
    // Every old shard is empty of entries that belong elsewhere: instances may stop reading them.
    await swapLayout(client, layoutKey, formatLayout([target, ...plan.leaving]), formatLayout(layoutAfter))
  }
  if (!dryRun && layerLayoutKey !== undefined && typeof layerLayout === 'string' && migration.left === 0) {
    // Its shards are empty: instances stop reading them when they next look (an instance still running
    // without the RedisTagIndex records it again, and is read again).
    await client.eval(DELETE_IF_SCRIPT, 1, layerLayoutKey, layerLayout)
  }
  return {
    dryRun,
    prefix,
    legacyPrefix,
    layoutBefore: plan.before,
    layoutAfter,
    knownKeysShards: target,
    sources: sources
      .map(({ shard, kind }, i) => ({ key: shard.keysKey, kind, entries: sizes[i]! }))
      .filter((source) => source.entries > 0),
    perShard: migration.perShard,
    moved: migration.moved,
    left: migration.left,
  }
}

/** What the recorded layout says to do to end with `wanted` shards. */
function planFor(recordedText: string | null, wanted: number | undefined, layoutKey: string): Plan {
  const recorded = parseLayout(recordedText)
  if (recordedText !== null && recorded === undefined) {
    throw new LayerCacheError(
      'TAG_INDEX_MIGRATION',
      `migrateTagIndex: the layout recorded at ${layoutKey} is ${JSON.stringify(recordedText)}, not a ` +
        'list of shard counts; fix or delete it first',
    )
  }
  const before = recorded ?? []
  const target = wanted ?? before[0] ?? DEFAULT_KNOWN_KEYS_SHARDS
  const current = before[0]
  if (current === undefined || current === target) {
    return { target, before, leaving: before.slice(1) }
  }
  // An interrupted re-shard to `target` (recorded as [old, target]) is picked up where it stopped.
  if (before.length === 1 || (before.length === 2 && before[1] === target)) {
    return { target, before, leaving: [current] }
  }
  throw new InvalidOptionError(
    `migrateTagIndex: a re-shard to ${current} shards is in progress (${layoutKey} = ` +
      `${JSON.stringify(recordedText)}); finish it first with knownKeysShards ${current}`,
  )
}

/**
 * Records the target layout so that no instance can miss an entry while they move: when another count is
 * in use, first "read both, write the old" and then "read both, write the new", each given `settleMs` to
 * reach every running instance.
 */
async function changeLayout(
  client: Redis | Cluster,
  layoutKey: string,
  plan: Plan,
  settleMs: number,
): Promise<void> {
  const { target, before, leaving } = plan
  if (before.length === 0) {
    // Nobody recorded one yet: ours, unless an instance starting right now wins (then re-plan).
    if ((await client.set(layoutKey, String(target), 'NX')) !== 'OK') {
      throw new LayerCacheError(
        'TAG_INDEX_MIGRATION',
        'migrateTagIndex: an instance recorded the layout meanwhile; run it again',
      )
    }
    return
  }
  if (before[0] !== target) {
    const old = before[0]!
    let recorded = formatLayout(before)
    if (before.length === 1) {
      await swapLayout(client, layoutKey, recorded, formatLayout([old, target]))
      recorded = formatLayout([old, target])
    }
    await sleep(settleMs)
    await swapLayout(client, layoutKey, recorded, formatLayout([target, old]))
    await sleep(settleMs)
    return
  }
  // Recorded as [target, …old]: an earlier run stopped while moving; instances may not all read it yet.
  if (leaving.length > 0) await sleep(settleMs)
}

async function swapLayout(
  client: Redis | Cluster,
  layoutKey: string,
  expected: string,
  next: string,
): Promise<void> {
  const swapped = await client.eval(SWAP_LAYOUT_SCRIPT, 1, layoutKey, expected, next)
  if (swapped !== 1) {
    throw new LayerCacheError(
      'TAG_INDEX_MIGRATION',
      `migrateTagIndex: the layout at ${layoutKey} changed during the migration (another one running?)`,
    )
  }
}

/** Moves entries out of source shards into the destination layout, a batch at a time. */
class Migration {
  readonly perShard: number[]
  moved = 0
  left = 0

  constructor(
    private readonly client: Redis | Cluster,
    private readonly destinations: readonly IndexShard[],
    private readonly batchSize: number,
    private readonly dryRun: boolean,
    private readonly onProgress: MigrateTagIndexOptions['onProgress'],
  ) {
    this.perShard = destinations.map(() => 0)
  }

  async drain(source: IndexShard): Promise<void> {
    let cursor: string | Buffer = '-'
    let moved = 0
    for (;;) {
      const members = await this.client.zrangebylexBuffer(
        source.keysKey,
        cursor,
        '+',
        'LIMIT',
        0,
        this.batchSize,
      )
      if (members.length === 0) break
      cursor = Buffer.concat([Buffer.from('('), members[members.length - 1]!])
      // Entries already in their shard (one both layouts have) stay.
      const moving = members
        .map((member) => ({ member, to: shardIndexOf(member, this.destinations.length) }))
        .filter(({ to }) => this.destinations[to]!.keysKey !== source.keysKey)
      let remaining: number
      if (this.dryRun) {
        for (const { to } of moving) this.perShard[to]!++
        moved += moving.length
        remaining = await this.client.zcard(source.keysKey)
      } else {
        const removed = moving.length === 0 ? 0 : await this.move(source, moving)
        moved += removed
        this.left += moving.length - removed
        remaining = await this.client.zcard(source.keysKey)
      }
      await this.onProgress?.({ source: source.keysKey, moved, remaining })
      if (members.length < this.batchSize) break
    }
    this.moved += moved
    if (!this.dryRun && this.destinations.every((shard) => shard.keysKey !== source.keysKey)) {
      // Expiries and tags of keys no longer indexed (a crash left them) go with the emptied set.
      if ((await this.client.zcard(source.keysKey)) === 0) {
        await this.client.unlink(source.expiryKey, source.tagsKey)
      }
    }
  }

  /** Copies the entries into their shards, then removes them from the source; returns how many went. */
  private async move(source: IndexShard, moving: readonly { member: Buffer; to: number }[]): Promise<number> {
    const keys = moving.map(({ member }) => member)
    const [[scores, tags]] = (await execBySlotOwner(this.client, [
      {
        slotKey: source.keysKey,
        add: (pipe) => {
          pipe.zmscore(source.expiryKey, ...keys)
          pipe.hmgetBuffer(source.tagsKey, ...keys)
        },
      },
    ])) as [[(string | null)[], (Buffer | null)[]]]
    const byShard = new Map<number, (string | Buffer)[]>()
    moving.forEach(({ member, to }, i) => {
      const args = byShard.get(to) ?? []
      args.push(member, scores[i] ?? String(NEVER), tags[i] ?? '')
      byShard.set(to, args)
    })
    await execBySlotOwner(
      this.client,
      [...byShard].map(([to, args]) => shardScript(this.destinations[to]!, MOVE_IN_SCRIPT, args)),
    )
    for (const { to } of moving) this.perShard[to]!++
    const pairs = moving.flatMap(({ member }, i) => [member, scores[i] ?? ''])
    const removed = await this.client.eval(
      REMOVE_MOVED_SCRIPT,
      3,
      source.keysKey,
      source.expiryKey,
      source.tagsKey,
      ...pairs,
    )
    return Number(removed)
  }
}
