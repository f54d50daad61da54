import {
  formatLayout,
  type IndexShard,
  layoutKeyOf,
  legacyShardOf,
  parseLayout,
  shardIndexOf,
  shardsOf,
} from './index-layout'
import type { RedisIO } from './redis-io'
import { execBySlotOwner } from './slot-pipelines'

// The recorded layout, recorded first (ARGV[1]) when there is none. Only a missing record is written: a
// full Redis (noeviction) refuses any SET, even one NX would skip, and reading must still work then
// (PEXPIRE and PERSIST need no memory). ARGV[2]: how long the record must live from now ('' for ever):
// never shortened (GT), and a record some instance keeps for ever stays so (GT leaves a key without TTL).
const READ_OR_RECORD_SCRIPT = `
local text = redis.call('GET', KEYS[1])
if not text then
  text = ARGV[1]
  redis.call('SET', KEYS[1], text)
  if ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
elseif ARGV[2] == '' then redis.call('PERSIST', KEYS[1])
else redis.call('PEXPIRE', KEYS[1], ARGV[2], 'GT') end
return text`

/**
 * How long the layout record outlives a value written under it, beyond the value's own TTL: an instance
 * re-reads (and so extends) the record at least every LAYOUT_RECHECK_MS while it writes, so this leaves
 * a wide margin for re-reads that failed.
 */
const RECORD_MARGIN_MS = 60 * 60_000

type Pipe = ReturnType<RedisIO['client']['pipeline']>

/**
 * How often an instance re-reads the recorded layout and looks for a legacy index again (in the
 * background, on index use). A re-shard waits a few of these between its steps (migrateTagIndex).
 */
export const LAYOUT_RECHECK_MS = 10_000

export const LAYOUT_WARNING = 'LAYERCACHE_TAG_INDEX_LAYOUT'
export const LEGACY_WARNING = 'LAYERCACHE_LEGACY_TAG_INDEX'

/** The shards in use, as recorded in Redis. */
export interface LayoutView {
  /** The recorded shard counts: new entries go to the first, the others are being drained. */
  readonly counts: readonly number[]
  /** The recorded counts, and those of a sharded index under the layer prefix (see read). */
  readonly signature: string
  /** Where new entries go. */
  readonly shards: readonly IndexShard[]
  /**
   * Shards of layouts being moved out of (a re-shard; with a RedisTagIndex, an index under the layer
   * prefix): read, cleaned and collected, never written.
   */
  readonly draining: readonly (readonly IndexShard[])[]
  /**
   * Every shard of every recorded layout, once: shard `s` has the same keys in every layout that has it,
   * and the same object in `shards` and `draining`.
   */
  readonly all: readonly IndexShard[]
}

/**
 * The layout of one known-keys index as this instance knows it: the shard counts every instance sharing
 * the index agreed on (recorded in Redis with SET NX by the first one; a different local setting yields
 * to it, with a warning), and whether the single-set index of older versions is still there. Read once
 * at the first use of the index, then again every LAYOUT_RECHECK_MS in the background; never on a read.
 */
export class KnownKeysLayout {
  /** `P~{P}layout` under the index prefix. */
  readonly key: string
  /** `P~{P}k`, `kx`, `kt` under the layer prefix: where versions before sharding kept every key. */
  readonly legacy: IndexShard
  private view: LayoutView | undefined
  private loading: Promise<LayoutView> | undefined
  private checkedAt = 0
  private legacySeen = false
  private legacyWarned = false
  private warnedFor: string | undefined
  /** True once anything asked for the layout (it can no longer be reconfigured). */
  started = false

  constructor(
    private readonly layer: RedisIO,
    /** Where the shards live: the layer prefix, or a RedisTagIndex's own. */
    readonly prefix: string,
    readonly configured: number,
    /** The longest a value indexed under this layout lives (undefined: for ever): the record outlives it. */
    private readonly maxEntryTtl?: number | undefined,
  ) {
    this.key = layoutKeyOf(prefix)
    this.legacy = legacyShardOf(layer.prefix)
  }

  /** Whether the legacy single set held entries when last looked at. */
  get hasLegacy(): boolean {
    return this.legacySeen
  }

  /** The layout to use now; the first call reads it from Redis, later ones refresh it in the background. */
  current(): LayoutView | Promise<LayoutView> {
    this.started = true
    const view = this.view
    if (view === undefined) return this.refresh()
    if (Date.now() - this.checkedAt >= LAYOUT_RECHECK_MS) {
      this.refresh().catch(() => {
        // Best effort: the last known layout stays in use and the next index use tries again.
      })
    }
    return view
  }

  /** Reads the recorded layout (recording ours first if there is none) and looks for a legacy index. */
  refresh(): Promise<LayoutView> {
    this.started = true
    this.loading ??= this.read().finally(() => {
      this.loading = undefined
    })
    return this.loading
  }

  /** The shard a new entry for `full` goes to. */
  writeShard(view: LayoutView, full: string): IndexShard {
    return view.shards[shardIndexOf(full, view.shards.length)]!
  }

  /** Every shard an entry for `full` may be in: its shard in each recorded layout, and the legacy set. */
  placesOf(view: LayoutView, full: string): IndexShard[] {
    const places = [this.writeShard(view, full)]
    for (const shards of view.draining) {
      const shard = shards[shardIndexOf(full, shards.length)]!
      if (!places.includes(shard)) places.push(shard)
    }
    if (this.legacySeen) places.push(this.legacy)
    return places
  }

  /** Whether `shard` is one of placesOf(view, full), without building that list. */
  isPlaceOf(view: LayoutView, full: string, shard: IndexShard): boolean {
    if (shard === this.legacy) return this.legacySeen
    if (this.writeShard(view, full) === shard) return true
    return view.draining.some((shards) => shards[shardIndexOf(full, shards.length)] === shard)
  }

  /** Every shard of every recorded layout (not the legacy set). */
  allShards(view: LayoutView): IndexShard[] {
    return [...view.all]
  }

  /** An invalidation found entries in the legacy set: clean and collect it from now on. */
  noteLegacy(): void {
    this.legacySeen = true
    this.warnLegacy(`the key index at ${this.legacy.keysKey} has the single-set layout of earlier versions`)
  }

  private warnLegacy(what: string): void {
    if (this.legacyWarned) return
    this.legacyWarned = true
    const layerPrefix = this.layer.prefix
    const from = layerPrefix === this.prefix ? '' : ` --legacy-prefix ${JSON.stringify(layerPrefix)}`
    process.emitWarning(
      `RedisLayer "${this.layer.name}": ${what}. It is still read, cleaned and collected, and new entries ` +
        `go to the ${this.view?.shards.length ?? this.configured} shards at ${this.prefix}; move it with ` +
        `\`layercache migrate-tag-index --redis <url> --tag-index-prefix ${JSON.stringify(this.prefix)}${from}\` ` +
        '(see docs/distributed.md, "The shared key and tag index").',
      { type: 'LayerCacheWarning', code: LEGACY_WARNING },
    )
  }

  private async read(): Promise<LayoutView> {
    this.checkedAt = Date.now()
    // Re-recorded when it is gone (evicted, deleted): instances that already agree keep agreeing.
    const ours = this.view === undefined ? String(this.configured) : formatLayout(this.view.counts)
    // With a RedisTagIndex, the layer prefix may still hold a sharded index of its own (written before the
    // tagIndex was configured, or by an instance without it): read, cleaned and collected until migrated.
    const ownKey = this.prefix === this.layer.prefix ? undefined : layoutKeyOf(this.layer.prefix)
    const [layout, legacy, own] = await execBySlotOwner(
      this.layer.client,
      [
        {
          slotKey: this.key,
          add: (pipe) => pipe.eval(READ_OR_RECORD_SCRIPT, 1, this.key, ours, this.recordLifetime()),
        },
        { slotKey: this.legacy.keysKey, add: (pipe) => pipe.exists(this.legacy.keysKey) },
        ...(ownKey === undefined ? [] : [{ slotKey: ownKey, add: (pipe: Pipe) => pipe.get(ownKey) }]),
      ],
      (pipe) => this.layer.execPipeline('key index layout', pipe),
    )
    const text = layout![0] as string | null
    let counts = parseLayout(text)
    if (counts === undefined) {
      counts = this.view?.counts.slice() ?? [this.configured]
      this.warnOnce(
        `unreadable:${text}`,
        `the layout recorded at ${this.key} is ${JSON.stringify(text)}, not a list of shard counts; ` +
          `using ${formatLayout(counts)}. Fix it with \`layercache migrate-tag-index\`.`,
      )
    } else if (counts[0] !== this.configured) {
      this.warnOnce(
        text!,
        `configured with ${this.configured} known-keys shards, but the index at ${this.prefix} records ` +
          `${counts[0]}: using ${counts[0]} so that every instance finds every key. Change the shard count ` +
          'with `layercache migrate-tag-index --known-key-shards <n>`.',
      )
    }
    if (legacy![0] === 1) this.noteLegacy()
    else this.legacySeen = false
    const ownCounts = own === undefined ? [] : (parseLayout(own[0] as string | null) ?? [])
    if (ownCounts.length > 0) {
      this.warnLegacy(`the layer prefix has a key index of its own (${ownKey} = ${formatLayout(ownCounts)})`)
    }
    const previous = this.view
    const signature = `${formatLayout(counts)}|${formatLayout(ownCounts)}`
    if (previous !== undefined && previous.signature === signature) return previous
    const byKey = new Map<string, IndexShard>()
    const layouts = [
      ...counts.map((count) => shardsOf(this.prefix, count)),
      ...ownCounts.map((count) => shardsOf(this.layer.prefix, count)),
    ]
    const [shards, ...draining] = layouts.map((layout) =>
      layout.map((shard) => {
        const known = byKey.get(shard.keysKey)
        if (known !== undefined) return known
        byKey.set(shard.keysKey, shard)
        return shard
      }),
    )
    const view: LayoutView = { counts, signature, shards: shards!, draining, all: [...byKey.values()] }
    this.view = view
    return view
  }

  /**
   * How long the record must live from now ('' for ever). It says in which shards entries are: were it
   * gone while values indexed under it live, an instance configured with fewer shards would record its
   * own count and never look in the others, so an invalidation would miss their keys. Every instance
   * extends it at each re-read by the longest its values live (plus a margin): it expires only once no
   * instance has written for that long, when every value written under it has expired too.
   */
  private recordLifetime(): string {
    return this.maxEntryTtl === undefined
      ? ''
      : String(this.maxEntryTtl + LAYOUT_RECHECK_MS + RECORD_MARGIN_MS)
  }

  private warnOnce(about: string, message: string): void {
    if (this.warnedFor === about) return
    this.warnedFor = about
    process.emitWarning(`RedisLayer "${this.layer.name}": ${message}`, {
      type: 'LayerCacheWarning',
      code: LAYOUT_WARNING,
    })
  }
}
