import type { Redis } from 'ioredis'
import { CacheStack, escapeGlob, globToRedisMatch, MemoryLayer, RedisLayer } from 'layercache'
import { type BenchContext, REDIS_TTL_MS, scaled } from '../context'
import { median, nowNs, orderOf, pairedRatio, sinceNs } from '../measure'
import { PAYLOAD, PAYLOAD_JSON } from '../payload'
import { formatCount, formatNs, type Row, type ScenarioResult } from '../report'
import { countExisting, countTraffic, describeTraffic, roundTrips, type Traffic } from '../traffic'

/**
 * Keyspaces at BENCH_SCALE=1: `noise` keys of other users plus `matching` keys of user 42 (both scaled),
 * and timed rounds per side. The noise is seeded once and shared by every size; the matching keys are
 * re-seeded before every run (not timed).
 */
const SIZES = [
  { noise: 100_000, matching: 10, rounds: 7 },
  { noise: 100_000, matching: 1000, rounds: 7 },
  { noise: 100_000, matching: 10_000, rounds: 5 },
] as const
/** What is invalidated: every key of user 42, or one field of each of its items. */
const PREFIX = 'user:42:'
const PATTERN = 'user:42:*:profile'
/** Fields of a user's items; the pattern matches the first one, so a quarter of the user's keys. */
const FIELDS = ['profile', 'orders', 'settings', 'feed'] as const
/** Noise keys per other user (users 0, 1, … skipping 42; 420–429 share the text `user:42` on purpose). */
const NOISE_PER_USER = 100
/** SCAN COUNT of the hand-written baseline (the usual advice), and entries per mset call while seeding. */
const SCAN_COUNT = 1000
const SEED_CHUNK = 1000
/** The scenario runs in its own logical database, so SCAN walks only this scenario's keyspace. */
const OWN_DB_OFFSET = 1

type Op = 'prefix' | 'pattern'
/** ours: the indexed stack; baseline: SCAN MATCH + UNLINK by hand; fallback: ours with keyIndex: false. */
type Side = 'ours' | 'baseline' | 'fallback'
const OPS: readonly Op[] = ['prefix', 'pattern']
/** The keyIndex: false stack runs the prefix only (it walks the same keyspace for a pattern). */
const SIDES: Record<Op, readonly Side[]> = {
  prefix: ['ours', 'baseline', 'fallback'],
  pattern: ['ours', 'baseline'],
}

function noiseKeys(count: number): string[] {
  const keys: string[] = []
  for (let user = 0; keys.length < count; user++) {
    if (user === 42) continue
    for (let j = 0; j < NOISE_PER_USER && keys.length < count; j++) {
      keys.push(`user:${user}:${j}:${FIELDS[j % FIELDS.length]}`)
    }
  }
  return keys
}

function matchingKeys(count: number): string[] {
  return Array.from({ length: count }, (_, j) => `${PREFIX}${j}:${FIELDS[j % FIELDS.length]}`)
}

/** Keys per UNLINK command of the baseline (DESIGN.md: raw baselines UNLINK in batches). */
const UNLINK_BATCH = 500

/** SCAN to completion, then one pipeline of UNLINKs of 500 found keys each; returns how many were unlinked. */
async function scanAndUnlink(client: Redis, match: string): Promise<number> {
  const found: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', match, 'COUNT', SCAN_COUNT)
    cursor = next
    for (const key of keys) found.push(key)
  } while (cursor !== '0')
  if (found.length === 0) return 0
  const pipe = client.pipeline()
  for (let i = 0; i < found.length; i += UNLINK_BATCH) pipe.unlink(...found.slice(i, i + UNLINK_BATCH))
  let unlinked = 0
  for (const [error, n] of (await pipe.exec()) ?? []) {
    if (error) throw error
    unlinked += n as number
  }
  return unlinked
}

/**
 * A connection to a database of its own (the next index after the target's), so that SCAN walks this
 * scenario's keys only, not what earlier scenarios left behind. Falls back to the shared client when the
 * server refuses SELECT (then the report's key count says what SCAN had to walk).
 */
async function ownDatabase(ctx: BenchContext): Promise<{ client: Redis; db: number | undefined }> {
  const db = (ctx.client.options.db ?? 0) + OWN_DB_OFFSET
  const client = ctx.client.duplicate({ db, lazyConnect: true })
  try {
    await client.connect()
    await client.select(db)
    return { client, db }
  } catch {
    client.disconnect()
    return { client: ctx.client, db: undefined }
  }
}

async function deleteUnder(client: Redis, prefix: string): Promise<void> {
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${escapeGlob(prefix)}*`, 'COUNT', SCAN_COUNT)
    cursor = next
    if (keys.length > 0) await client.unlink(...keys)
  } while (cursor !== '0')
}

interface SizeResult {
  readonly noise: number
  readonly matching: number
  /** Keys the pattern matches (a quarter of `matching`). */
  readonly patternMatching: number
  readonly rounds: number
  /** Keys in the database right before the last timed baseline run: what every SCAN had to walk. */
  readonly dbKeys: number
  readonly ns: Record<Op, Record<Side, number[]>>
  /** Counted in the warm-up round; keyIndex: false runs the prefix only. */
  readonly traffic: Record<Op, Partial<Record<Side, Traffic>>>
}

/** Everything the sizes share: one keyspace of noise keys, two stacks over the same Redis prefix. */
interface Setup {
  readonly client: Redis
  readonly layerPrefix: string
  readonly noise: readonly string[]
  readonly noiseFull: readonly string[]
  readonly memory: Record<'ours' | 'fallback', MemoryLayer>
  readonly stacks: Record<'ours' | 'fallback', CacheStack>
}

async function mset(cache: CacheStack, keys: readonly string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += SEED_CHUNK) {
    await cache.mset(keys.slice(i, i + SEED_CHUNK).map((key) => ({ key, value: PAYLOAD })))
  }
}

function countInMemory(memory: MemoryLayer, keys: readonly string[]): number {
  let n = 0
  for (const key of keys) if (memory.has(key)) n++
  return n
}

async function runSize(
  setup: Setup,
  noiseCount: number,
  matchingCount: number,
  rounds: number,
): Promise<SizeResult> {
  const { client, layerPrefix, stacks, memory } = setup
  const label = `${formatCount(matchingCount)} of ${formatCount(noiseCount + matchingCount)} keys`
  const matching = matchingKeys(matchingCount)
  const matchingFull = matching.map((key) => layerPrefix + key)
  const test = (op: Op, key: string) => op === 'prefix' || key.endsWith(':profile')
  const hit: Record<Op, string[]> = { prefix: matching, pattern: matching.filter((k) => test('pattern', k)) }
  const miss: Record<Op, string[]> = { prefix: [], pattern: matching.filter((k) => !test('pattern', k)) }
  const expected: Record<Op, number> = { prefix: hit.prefix.length, pattern: hit.pattern.length }
  const baselineMatch: Record<Op, string> = {
    prefix: `${escapeGlob(layerPrefix + PREFIX)}*`,
    pattern: escapeGlob(layerPrefix) + globToRedisMatch(PATTERN),
  }

  // Each side's keys are written as that side would have them: through its stack (L1 and Redis), or for
  // the baseline as plain SETs of the JSON (a stale index entry left by that is harmless: ours re-seeds).
  const seed = async (side: Side) => {
    if (side === 'baseline') {
      for (let i = 0; i < matchingCount; i += SEED_CHUNK) {
        const pipe = client.pipeline()
        for (const full of matchingFull.slice(i, i + SEED_CHUNK))
          pipe.set(full, PAYLOAD_JSON, 'PX', REDIS_TTL_MS)
        await pipe.exec()
      }
    } else {
      await mset(stacks[side], matching)
    }
    const inRedis = await countExisting(client, matchingFull)
    const inL1 = side === 'baseline' ? matchingCount : countInMemory(memory[side], matching)
    if (inRedis !== matchingCount || inL1 !== matchingCount) {
      throw new Error(
        `prefix invalidation seeding failed (${label}): ${inRedis} of ${matchingCount} matching keys in ` +
          `Redis, ${inL1} in L1`,
      )
    }
  }

  const run = async (op: Op, side: Side): Promise<number> => {
    if (side === 'baseline') return scanAndUnlink(client, baselineMatch[op])
    const cache = stacks[side]
    return op === 'prefix' ? cache.invalidateByPrefix(PREFIX) : cache.invalidateByPattern(PATTERN)
  }

  const verify = async (op: Op, side: Side, removed: number) => {
    const problems: string[] = []
    if (removed !== expected[op])
      problems.push(`it reported ${removed} keys removed, expected ${expected[op]}`)
    const full = (keys: readonly string[]) => keys.map((key) => layerPrefix + key)
    const hitLeft = await countExisting(client, full(hit[op]))
    if (hitLeft !== 0) problems.push(`${hitLeft} of ${hit[op].length} matching keys are still in Redis`)
    const missLeft = await countExisting(client, full(miss[op]))
    if (missLeft !== miss[op].length) {
      problems.push(
        `${miss[op].length - missLeft} of ${miss[op].length} non-matching user keys are gone from Redis`,
      )
    }
    const noiseLeft = await countExisting(client, setup.noiseFull)
    if (noiseLeft !== noiseCount)
      problems.push(`${noiseCount - noiseLeft} of ${noiseCount} noise keys are gone from Redis`)
    // The hand-written baseline does not know about L1; ours must have emptied its own and kept the rest.
    if (side !== 'baseline') {
      const l1 = memory[side]
      const hitInL1 = countInMemory(l1, hit[op])
      if (hitInL1 !== 0) problems.push(`${hitInL1} matching keys are still in L1`)
      const missInL1 = countInMemory(l1, miss[op])
      if (missInL1 !== miss[op].length)
        problems.push(`${miss[op].length - missInL1} non-matching user keys left L1`)
      const noiseInL1 = countInMemory(l1, setup.noise)
      if (noiseInL1 !== noiseCount) problems.push(`${noiseCount - noiseInL1} noise keys left L1`)
    }
    if (problems.length > 0) {
      throw new Error(`${op} invalidation is invalid (${label}, ${side}): ${problems.join('; ')}`)
    }
  }

  const ns = {
    prefix: { ours: [], baseline: [], fallback: [] },
    pattern: { ours: [], baseline: [], fallback: [] },
  } as Record<Op, Record<Side, number[]>>
  const traffic: Record<Op, Partial<Record<Side, Traffic>>> = { prefix: {}, pattern: {} }
  let dbKeys = 0
  // Round 0 is a warm-up that counts the traffic (wrapped client) and is not timed. Every run is preceded by
  // a re-seed of the matching keys (not timed); sides and operations alternate A B C / C B A between rounds.
  for (let round = 0; round <= rounds; round++) {
    for (const op of orderOf(OPS, round)) {
      for (const side of orderOf(SIDES[op], round)) {
        await seed(side)
        if (side === 'baseline' && round === rounds) dbKeys = await client.dbsize()
        const counter = round === 0 ? countTraffic(client) : undefined
        let elapsed: number
        let removed: number
        try {
          const start = nowNs()
          removed = await run(op, side)
          elapsed = sinceNs(start)
        } finally {
          counter?.stop()
        }
        if (counter !== undefined) traffic[op][side] = counter.traffic
        await verify(op, side, removed)
        if (round > 0) ns[op][side].push(elapsed)
      }
    }
  }
  return {
    noise: noiseCount,
    matching: matchingCount,
    patternMatching: expected.pattern,
    rounds,
    dbKeys,
    ns,
    traffic,
  }
}

function roundsText(rounds: number): string {
  return rounds === 1 ? '1 round' : `median of ${rounds} rounds`
}

function rowsOf(result: SizeResult): Row[] {
  const rows: Row[] = []
  const total = result.noise + result.matching
  const scenario = `Prefix invalidation, ${formatCount(result.matching)} of ${formatCount(total)} keys`
  for (const op of OPS) {
    const ns = result.ns[op]
    const traffic = result.traffic[op]
    const call = op === 'prefix' ? `invalidateByPrefix('${PREFIX}')` : `invalidateByPattern('${PATTERN}')`
    const matches = op === 'prefix' ? result.matching : result.patternMatching
    const what = `${call} (${formatCount(matches)} match${matches === 1 ? '' : 'es'})`
    const paired = pairedRatio(ns.ours, ns.baseline)
    rows.push({
      scenario,
      metric: `time, ${what} vs SCAN MATCH COUNT ${SCAN_COUNT} + pipelined UNLINK (${UNLINK_BATCH} keys per command), ${roundsText(result.rounds)}`,
      ours: formatNs(median(ns.ours)),
      baseline: formatNs(median(ns.baseline)),
      ratio: paired.median,
      roundRange: paired.range,
    })
    if (ns.fallback.length > 0) {
      const fallback = pairedRatio(ns.fallback, ns.baseline)
      rows.push({
        scenario,
        metric: `time, the same ${op} on a RedisLayer with keyIndex: false (our SCAN fallback) vs the SCAN baseline`,
        ours: formatNs(median(ns.fallback)),
        baseline: formatNs(median(ns.baseline)),
        ratio: fallback.median,
        roundRange: fallback.range,
      })
    }
    const ours = roundTrips(traffic.ours!)
    const base = roundTrips(traffic.baseline!)
    const fallbackTraffic = traffic.fallback
    rows.push({
      scenario,
      metric:
        `Redis round trips of the ${op} invalidation (SCAN walked a database of ${formatCount(result.dbKeys)} keys): ` +
        `ours ${describeTraffic(traffic.ours!)}; baseline ${describeTraffic(traffic.baseline!)}` +
        (fallbackTraffic === undefined
          ? ''
          : `; keyIndex: false ${roundTrips(fallbackTraffic)} = ${describeTraffic(fallbackTraffic)}`),
      ours: formatCount(ours),
      baseline: formatCount(base),
      ratio: ours / base,
    })
  }
  return rows
}

/**
 * Scenario 7: invalidating the keys of one user (a prefix, and a glob pattern over a quarter of them) among
 * many other users' keys, on CacheStack([MemoryLayer, RedisLayer]) with the layer's key index, against the
 * SCAN MATCH + pipelined UNLINK users write by hand, and against the same stack with `keyIndex: false`.
 */
export async function prefixInvalidation(ctx: BenchContext): Promise<ScenarioResult> {
  const sizes = SIZES.map((size) => ({
    noise: scaled(ctx, size.noise),
    matching: scaled(ctx, size.matching),
    rounds: Math.max(1, Math.round(size.rounds * Math.min(1, ctx.scale))),
  }))
  const noiseCount = Math.max(...sizes.map((size) => size.noise))
  const { client, db } = await ownDatabase(ctx)
  const layerPrefix = `${ctx.prefix}prefix:`
  const rows: Row[] = []
  const plans: string[] = []
  try {
    const maxSize = noiseCount + Math.max(...sizes.map((size) => size.matching)) + 1
    const memory = { ours: new MemoryLayer({ maxSize }), fallback: new MemoryLayer({ maxSize }) }
    const layer = (keyIndex: boolean) =>
      new RedisLayer({ client, ttl: REDIS_TTL_MS, prefix: layerPrefix, keyIndex })
    const stacks = {
      ours: new CacheStack([memory.ours, layer(true)]),
      fallback: new CacheStack([memory.fallback, layer(false)]),
    }
    // The two stacks share the Redis prefix, hence the keyspace: both write the noise (in their own L1).
    const noise = noiseKeys(noiseCount)
    const noiseFull = noise.map((key) => layerPrefix + key)
    await mset(stacks.ours, noise)
    await mset(stacks.fallback, noise)
    const setup: Setup = { client, layerPrefix, noise, noiseFull, memory, stacks }
    for (const size of sizes) {
      const result = await runSize(setup, size.noise, size.matching, size.rounds)
      rows.push(...rowsOf(result))
      plans.push(
        `${formatCount(result.matching)} of ${formatCount(result.noise + result.matching)} keys × ` +
          `${result.rounds} round${result.rounds === 1 ? '' : 's'} (SCAN walked ${formatCount(result.dbKeys)})`,
      )
    }
  } finally {
    if (client !== ctx.client) {
      try {
        await deleteUnder(client, ctx.prefix)
      } finally {
        await client.quit().catch(() => client.disconnect())
      }
    }
  }
  return {
    rows,
    method: [
      `Prefix invalidation: a keyspace of N noise keys (\`user:<u>:<j>:<field>\`, ${NOISE_PER_USER} per user, ` +
        `users other than 42, so \`user:420:…\` shares the text \`user:42\`) plus M keys \`${PREFIX}<j>:<field>\` ` +
        `(fields ${FIELDS.join(', ')} in turn), all written with \`cache.mset\` (in L1 and Redis, not timed). ` +
        `ours = \`invalidateByPrefix('${PREFIX}')\` (M matches) and \`invalidateByPattern('${PATTERN}')\` ` +
        '(M/4 matches) on CacheStack([MemoryLayer, RedisLayer({ client })]) with the default key index; ' +
        `baseline = \`SCAN cursor MATCH <layer prefix>${PREFIX}* COUNT ${SCAN_COUNT}\` (for the pattern: ` +
        `MATCH <layer prefix>${PATTERN}) to completion, then one pipeline of \`UNLINK k1 … k${UNLINK_BATCH}\` commands (${UNLINK_BATCH} found keys each), ` +
        'on the same client and the same keys (Redis only: it does not know about L1; its keys are re-seeded as ' +
        'plain SETs); info, prefix only = the same stack with `RedisLayer({ keyIndex: false })` on the same ' +
        'Redis prefix (and its own L1 holding the same keys), which falls back to SCAN.',
      `Prefix invalidation: ${plans.join(', ')}; ` +
        (db === undefined
          ? 'in the shared database (SELECT was refused), so SCAN also walked the other scenarios\u2019 keys; '
          : `in a logical database of its own (db ${db}), so SCAN walks only this scenario\u2019s keys; `) +
        'each run is preceded by a re-seed of the M keys (not timed); each round runs every side once per ' +
        'operation, sides and operations in A B C / C B A order, after one warm-up round that also counts ' +
        'round trips; ratio = median of per-round ratios. After every run the scenario checks that the ' +
        'matching keys are gone from Redis (EXISTS) and, for ours, from L1, that the other user-42 keys and ' +
        'all N noise keys are still in Redis and L1, and that the call reported the number of matches.',
    ],
  }
}
