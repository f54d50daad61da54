import { CacheStack, type CacheStackOptions, MemoryLayer, RedisLayer } from 'layercache'
import { LRUCache } from 'lru-cache'
import { type BenchContext, REDIS_TTL_MS } from '../context'
import { compareL1, l1Plan } from '../l1-rows'
import { consume, measureBatchesAmong, nowNs, sinceNs } from '../measure'
import { makeKeys, PAYLOAD, type Product } from '../payload'
import { formatCount, type ScenarioResult } from '../report'

const KEY_COUNT = 1000
export const L1_TTL_MS = 60_000
const L1_MAX = 10_000

/** Every read-side freshness option on (the ones a fresh L1 hit has to look at), plus jitter. */
export const FRESHNESS: CacheStackOptions = {
  ttl: L1_TTL_MS,
  staleWhileRevalidate: 10_000,
  staleIfError: 60_000,
  refreshAhead: 0.9,
  earlyExpiration: 1,
  jitter: 0.1,
}
/** The earliest moment after seeding a read could be due for refresh-ahead: jitter shortens the TTL first. */
const FIRST_REFRESH_MS = L1_TTL_MS * (1 - FRESHNESS.jitter!) * FRESHNESS.refreshAhead!

const SIDES = ['options', 'plain', 'raw'] as const
type Sides = (typeof SIDES)[number]

function stackOf(ctx: BenchContext, tag: string, options: CacheStackOptions) {
  const memory = new MemoryLayer({ ttl: L1_TTL_MS, maxSize: L1_MAX })
  const redis = new RedisLayer({ client: ctx.client, ttl: REDIS_TTL_MS, prefix: `${ctx.prefix}${tag}` })
  return { memory, cache: new CacheStack([memory, redis], options) }
}

/**
 * Scenario 4: what the freshness options cost a fresh L1 hit. `await cache.getOrSet(k, loader)` on
 * CacheStack([MemoryLayer, RedisLayer]) created with every read-side freshness option on, against the
 * same stack without them and against `await` of an async wrapper around a raw lru-cache get. All three
 * run side by side in one alternation (A B C / C B A), so "options on / options off" is a ratio of its own.
 */
export async function freshnessL1(ctx: BenchContext): Promise<ScenarioResult> {
  const keys = makeKeys(KEY_COUNT)
  const withOptions = stackOf(ctx, 'fl1:opt:', FRESHNESS)
  const plain = stackOf(ctx, 'fl1:plain:', { ttl: L1_TTL_MS })
  // Keys are written by getOrSet itself, so the entries carry the freshness metadata a real read finds.
  const seedLoader = (): Product => PAYLOAD
  const seeded = nowNs()
  for (const key of keys) {
    await withOptions.cache.getOrSet(key, seedLoader)
    await plain.cache.getOrSet(key, seedLoader)
  }
  const sample = withOptions.memory.get(keys[0]!)
  const plainSample = plain.memory.get(keys[0]!)
  if (sample?.freshUntil === undefined || sample.createdAt === undefined || sample.loadMs === undefined) {
    throw new Error('freshness L1 scenario is invalid: the seeded entry carries no freshness metadata')
  }
  if (plainSample === undefined || plainSample.freshUntil !== undefined) {
    throw new Error('freshness L1 scenario is invalid: the plain stack wrote freshness metadata')
  }
  const freshForMs = sample.freshUntil - sample.createdAt

  const lru = new LRUCache<string, Product>({ max: L1_MAX, ttl: L1_TTL_MS })
  for (const key of keys) lru.set(key, PAYLOAD)
  const rawGet = async (key: string): Promise<Product | undefined> => lru.get(key)

  // Own loop per side (own call sites, own JIT feedback); the loader is hoisted and must never run.
  let missing = 0
  const at: Record<Sides, number> = { options: 0, plain: 0, raw: 0 }
  const loader = (): Product => PAYLOAD
  const optionsCache = withOptions.cache
  const plainCache = plain.cache
  const batches: Record<Sides, (n: number) => Promise<void>> = {
    options: async (n) => {
      let j = at.options
      let id = 0
      for (let i = 0; i < n; i++) {
        id += (await optionsCache.getOrSet(keys[j]!, loader)).id
        if (++j === KEY_COUNT) j = 0
      }
      at.options = j
      consume(id)
    },
    plain: async (n) => {
      let j = at.plain
      let id = 0
      for (let i = 0; i < n; i++) {
        id += (await plainCache.getOrSet(keys[j]!, loader)).id
        if (++j === KEY_COUNT) j = 0
      }
      at.plain = j
      consume(id)
    },
    raw: async (n) => {
      let j = at.raw
      let id = 0
      for (let i = 0; i < n; i++) {
        const value = await rawGet(keys[j]!)
        if (value === undefined) missing++
        else id += value.id
        if (++j === KEY_COUNT) j = 0
      }
      at.raw = j
      consume(id)
    },
  }

  const plan = l1Plan(ctx)
  optionsCache.resetStats()
  plainCache.resetStats()
  const samples = await measureBatchesAmong(plan, SIDES, batches)
  const timedUntilMs = sinceNs(seeded) / 1e6

  // Every timed read must have been a fresh L1 hit: no loader, no refresh of any kind, no L2 read.
  for (const [name, cache] of [
    ['with options', optionsCache],
    ['plain', plainCache],
  ] as const) {
    const s = cache.getStats()
    const l2Reads = (s.layers[1]?.hits ?? 0) + (s.layers[1]?.misses ?? 0)
    const l1Misses = s.layers[0]!.misses
    const off =
      l1Misses + s.misses + s.loaderCalls + s.backgroundRefreshes + s.earlyRefreshes + s.staleServed + l2Reads
    if (off > 0 || s.layers[0]!.hits === 0) {
      throw new Error(
        `freshness L1 scenario is invalid: stack ${name} did not answer every read as a fresh L1 hit ` +
          `(L1 hits ${s.layers[0]!.hits}, L1 misses ${l1Misses}, misses ${s.misses}, loader calls ${s.loaderCalls}, ` +
          `background refreshes ${s.backgroundRefreshes}, early refreshes ${s.earlyRefreshes}, ` +
          `stale served ${s.staleServed}, L2 reads ${l2Reads}; timing ended ${(timedUntilMs / 1000).toFixed(1)} s ` +
          `after seeding, refresh-ahead may fire from ${(FIRST_REFRESH_MS / 1000).toFixed(1)} s)`,
      )
    }
  }
  if (missing > 0) throw new Error(`freshness L1 scenario is invalid: ${missing} raw lru-cache reads missed`)

  const { options, plain: off, raw } = samples
  const optionList = Object.entries(FRESHNESS)
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ')
  return {
    rows: [
      ...compareL1('L1 hit, getOrSet + freshness', options, raw, true, true),
      ...compareL1('L1 hit, getOrSet, no freshness', off, raw, false, false),
      ...compareL1('Freshness cost: options on vs off', options, off, true, false),
    ],
    method: [
      `Freshness L1: \`await cache.getOrSet(k, loader)\` on CacheStack([MemoryLayer({ ttl: ${L1_TTL_MS}, ` +
        `maxSize: ${L1_MAX} }), RedisLayer], { ${optionList} }) vs the same stack with { ttl: ${L1_TTL_MS} } ` +
        `only vs \`async (k) => lru.get(k)\` on \`new LRUCache({ max: ${L1_MAX}, ttl: ${L1_TTL_MS} })\`; ` +
        `${KEY_COUNT} keys written by getOrSet (so entries carry freshUntil/createdAt/loadMs: fresh for ` +
        `${(freshForMs / 1000).toFixed(1)} s on the sampled key) and cycled.`,
      `Freshness L1: three sides in one alternation (A B C / C B A), same plan as L1 hit: ` +
        `${formatCount(plan.warmupOps)} warm-up ops per side, ${plan.rounds} rounds × (one timed batch of ` +
        `${formatCount(plan.opsPerRound)} ops + ${plan.latencyBatches} timed batches of ${plan.latencyBatchOps}); ` +
        `${formatCount(options.ops)} ops per side. Checked after timing: every read of both stacks an L1 hit, ` +
        `0 loader calls, 0 background/early refreshes, 0 stale served, 0 L2 reads (timing ended ` +
        `${(timedUntilMs / 1000).toFixed(1)} s after seeding; refresh-ahead could not fire before ` +
        `${(FIRST_REFRESH_MS / 1000).toFixed(1)} s).`,
      'Freshness L1: the "options on vs off" rows compare the stack with options to the same stack without ' +
        'them (Baseline column), per round: the cost the options add; the budget row compares the stack ' +
        'with options to the raw lru-cache wrapper.',
    ],
  }
}
