import { setTimeout as sleep } from 'node:timers/promises'
import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { LRUCache } from 'lru-cache'
import { type BenchContext, REDIS_TTL_MS, scaled } from '../context'
import { median, pairedRatio } from '../measure'
import { makeKeys, PAYLOAD, PAYLOAD_JSON } from '../payload'
import { formatCount, type Row, type ScenarioResult } from '../report'
// Every read-side freshness option on, as in the freshness scenario: entries carry their metadata.
import { FRESHNESS, L1_TTL_MS } from './freshness-l1'

const SMALL_VALUE = 'in stock'

/** How the values of one fill are made: one per key, as the scenario's row describes. */
interface ValueKind {
  readonly label: string
  readonly make: (i: number) => unknown
  readonly budgeted: boolean
}

const VALUES: readonly ValueKind[] = [
  {
    label: 'rows as a loader returns them',
    // A fresh object per key, its strings and nested array its own (JSON.parse of the row, as a database
    // driver or an HTTP client hands it over).
    make: (i) => {
      const row = JSON.parse(PAYLOAD_JSON) as { id: number }
      row.id = i
      return row
    },
    budgeted: true,
  },
  {
    label: 'one small string for every key',
    make: () => SMALL_VALUE,
    budgeted: false,
  },
  {
    label: 'shallow copies sharing nested parts',
    // What the peer scenario stores: `{ ...PAYLOAD, id }` shares PAYLOAD's `tags` array, which lru-cache
    // keeps once; memory protection must copy it per entry (the caller may still change it).
    make: (i) => ({ ...PAYLOAD, id: i }),
    budgeted: false,
  },
]

/**
 * One way of holding the entries. `create` builds an empty holder (not measured: lru-cache allocates its
 * arrays for `max` keys up front, on both sides alike); `fill` then adds the entries.
 */
interface Holder {
  readonly name: string
  create(): Promise<Filling>
}

interface Filling {
  fill(keys: readonly string[], make: (i: number) => unknown): Promise<void>
  /** Once the heap was read: checks every entry is held, and removes what lives outside the process. */
  close(keys: readonly string[]): Promise<void>
}

function heapNow(): number {
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

/** Full collections with pauses between them, so work a collection leaves for later is done too. */
async function settle(gc: () => void): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await sleep(10)
    gc()
  }
}

/** Bytes of heap per entry that `holder` adds when filled with `keys.length` values of `kind`. */
async function bytesPerEntry(
  gc: () => void,
  holder: Holder,
  keys: readonly string[],
  kind: ValueKind,
): Promise<number> {
  const filling = await holder.create()
  // One entry first, so whatever a holder makes on its first write is not billed to the entries.
  await filling.fill(['warm-up'], kind.make)
  await settle(gc)
  const before = heapNow()
  await filling.fill(keys, kind.make)
  await settle(gc)
  const bytes = (heapNow() - before) / keys.length
  // Used after the second reading, the holder is live through it.
  await filling.close(keys)
  return bytes
}

function checkHeld(has: (key: string) => boolean, keys: readonly string[], name: string): void {
  if (!keys.every(has)) throw new Error(`heap per L1 entry: ${name} lost entries`)
}

function lruHolder(max: number): Holder {
  return {
    name: 'lru-cache',
    create: async () => {
      const lru = new LRUCache<string, NonNullable<unknown>>({ max, ttl: L1_TTL_MS })
      return {
        fill: async (keys, make) => {
          for (let i = 0; i < keys.length; i++) lru.set(keys[i]!, make(i) as NonNullable<unknown>)
        },
        close: async (keys) => checkHeld((key) => lru.has(key), keys, 'lru-cache'),
      }
    },
  }
}

function memoryHolder(max: number): Holder {
  return {
    name: 'CacheStack([MemoryLayer])',
    create: async () => {
      const memory = new MemoryLayer({ ttl: L1_TTL_MS, maxSize: max })
      const cache = new CacheStack([memory])
      return {
        fill: async (keys, make) => {
          for (let i = 0; i < keys.length; i++) await cache.set(keys[i]!, make(i))
        },
        close: async (keys) => checkHeld((key) => memory.has(key), keys, 'the memory layer'),
      }
    },
  }
}

function freshnessHolder(max: number): Holder {
  return {
    name: 'CacheStack([MemoryLayer], every freshness option).getOrSet',
    create: async () => {
      const memory = new MemoryLayer({ ttl: L1_TTL_MS, maxSize: max })
      const cache = new CacheStack([memory], FRESHNESS)
      return {
        fill: async (keys, make) => {
          for (let i = 0; i < keys.length; i++) await cache.getOrSet(keys[i]!, () => make(i))
        },
        close: async (keys) => {
          checkHeld((key) => memory.has(key), keys, 'the memory layer')
          if (memory.get(keys[0]!)?.freshUntil === undefined) {
            throw new Error('heap per L1 entry: the freshness entries carry no metadata')
          }
        },
      }
    },
  }
}

function twoTierHolder(ctx: BenchContext, max: number, fill: number): Holder {
  return {
    name: 'CacheStack([MemoryLayer, RedisLayer])',
    create: async () => {
      const memory = new MemoryLayer({ ttl: L1_TTL_MS, maxSize: max })
      const redis = new RedisLayer({
        client: ctx.pipelinedClient,
        ttl: REDIS_TTL_MS,
        prefix: `${ctx.prefix}heap${fill}`,
      })
      const cache = new CacheStack([memory, redis])
      return {
        fill: async (keys, make) => {
          for (let i = 0; i < keys.length; i += 500) {
            await Promise.all(keys.slice(i, i + 500).map((key, j) => cache.set(key, make(i + j))))
          }
        },
        close: async (keys) => {
          checkHeld((key) => memory.has(key), keys, 'the memory layer')
          // Later fills and scenarios should not find a Redis swollen by this one.
          await redis.clear()
        },
      }
    },
  }
}

interface Comparison {
  readonly scenario: string
  readonly ours: (round: number) => Holder
  readonly kind: ValueKind
  readonly budgeted: boolean
}

/**
 * Heap per memory-layer entry, side by side with lru-cache: the same number of keys, each side filled
 * with its own values of the same kind, heap (heapUsed + arrayBuffers) after gc() before and after.
 */
export async function l1Heap(ctx: BenchContext): Promise<ScenarioResult> {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) {
    return { rows: [], method: ['Heap per L1 entry: not measured (needs node --expose-gc).'] }
  }
  const entries = scaled(ctx, 100_000)
  const rounds = 3
  const max = entries * 2
  const keys = makeKeys(entries)
  const [loaderRows, smallValue, shallow] = VALUES as [ValueKind, ValueKind, ValueKind]
  const comparisons: Comparison[] = [
    ...VALUES.map((kind) => ({
      scenario: `Heap per L1 entry, ${kind.label}`,
      ours: () => memoryHolder(max),
      kind,
      budgeted: kind.budgeted,
    })),
    {
      scenario: `Heap per L1 entry, two tiers, ${loaderRows.label}`,
      ours: (round: number) => twoTierHolder(ctx, max, round),
      kind: loaderRows,
      budgeted: false,
    },
    {
      scenario: `Heap per L1 entry, getOrSet with every freshness option, ${loaderRows.label}`,
      ours: () => freshnessHolder(max),
      kind: loaderRows,
      budgeted: false,
    },
  ]
  const rows: Row[] = []
  for (const comparison of comparisons) {
    const ours: number[] = []
    const baseline: number[] = []
    // A small fill first, so code and structures made once per process are not billed to the entries.
    const warmUp = keys.slice(0, 1000)
    await bytesPerEntry(gc, comparison.ours(rounds), warmUp, comparison.kind)
    await bytesPerEntry(gc, lruHolder(warmUp.length), warmUp, comparison.kind)
    for (let round = 0; round < rounds; round++) {
      const sides = [
        () => bytesPerEntry(gc, comparison.ours(round), keys, comparison.kind).then((b) => ours.push(b)),
        () => bytesPerEntry(gc, lruHolder(max), keys, comparison.kind).then((b) => baseline.push(b)),
      ]
      for (const side of round % 2 === 0 ? sides : sides.reverse()) await side()
    }
    const paired = pairedRatio(ours, baseline)
    rows.push({
      scenario: comparison.scenario,
      metric: `heap bytes per entry, median of ${rounds} fills`,
      ours: `${median(ours).toFixed(0)} B`,
      baseline: `${median(baseline).toFixed(0)} B`,
      ratio: paired.median,
      roundRange: paired.range,
      budget: comparison.budgeted ? { text: '≤ 1.4× heap', maxRatio: 1.4 } : undefined,
    })
  }
  return {
    rows,
    method: [
      `Heap per L1 entry: ${formatCount(entries)} keys set through \`cache.set\` on ` +
        `CacheStack([MemoryLayer({ ttl: ${L1_TTL_MS}, maxSize: ${formatCount(max)} })]) (default 'freeze' ` +
        `protection) vs \`lru.set\` on \`new LRUCache({ max: ${formatCount(max)}, ttl: ${L1_TTL_MS} })\`; ` +
        'each side a fresh instance per fill (built, and one entry written, before the first reading, so ' +
        "lru-cache's arrays for `max` keys are not counted on either side) and its own values; 3 × (10 ms, gc()) and " +
        `heap (heapUsed + arrayBuffers) before and after the fill, (after − before) / keys; ${rounds} fills ` +
        'per side alternating, ' +
        'ratio = median of the per-round ratios. Includes the value as each side keeps it: lru-cache the ' +
        "caller's object, the memory layer its frozen copy (the caller's original is garbage once dropped).",
      `Heap per L1 entry values: "${loaderRows.label}" = JSON.parse of the ${PAYLOAD_JSON.length}-byte row ` +
        `with its own id (the budget row); "${smallValue.label}" = the string '${SMALL_VALUE}' under every key ` +
        `(what each side adds per key); "${shallow.label}" = \`{ ...PAYLOAD, id }\`, whose \`tags\` array ` +
        'lru-cache holds once and memory protection copies per entry.',
      'Heap per L1 entry, two tiers: CacheStack([MemoryLayer, RedisLayer]) (auto-pipelined ioredis, sets in ' +
        'batches of 500) against the same lru-cache fill: the in-process heap a two-tier user sees (Redis ' +
        'memory is not counted). Freshness row: getOrSet with every freshness option, so each entry keeps ' +
        'freshUntil, createdAt and loadMs.',
    ],
  }
}
