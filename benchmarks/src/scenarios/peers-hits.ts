import type { Redis } from 'ioredis'
import { type BenchContext, scaled } from '../context'
import { consume, measureBatchesAmong, median, nowNs, sinceNs } from '../measure'
import { makeKeys, PAYLOAD, type Product } from '../payload'
import { LIBRARIES, type Library, type PeerCache, withPeers } from '../peers'
import type { PeerRow } from '../peers-report'
import { formatCount, type ScenarioResult } from '../report'
import { emptySamples, rowsOf, timeEachOp } from './peers-common'

const KEY_COUNT = 1000
const L1_MAX = 10_000
const CALLERS = 100
const BATCH = 100

async function commandsProcessed(client: Redis): Promise<number> {
  const info = await client.info('stats')
  return Number(/^total_commands_processed:(\d+)/m.exec(info)?.[1] ?? Number.NaN)
}

async function seed(peers: Record<Library, PeerCache>, keys: readonly string[]): Promise<void> {
  for (const peer of Object.values(peers)) {
    for (let i = 0; i < keys.length; i += 100) {
      await Promise.all(keys.slice(i, i + 100).map((key) => peer.set(key, PAYLOAD)))
    }
  }
}

/** L1 get and getOrSet hits, every library, sub-microsecond-capable timing (100-op batches). */
async function l1Hits(ctx: BenchContext, method: string[]): Promise<PeerRow[]> {
  const keys = makeKeys(KEY_COUNT)
  return withPeers(
    LIBRARIES,
    { url: ctx.url, prefix: `${ctx.prefix}peers:l1:`, tier: 'both', l1Max: L1_MAX },
    async (peers) => {
      await seed(peers, keys)
      let missing = 0
      const loader = async (): Promise<Product> => {
        missing++
        return PAYLOAD
      }
      // Does an L1 hit touch Redis? Count server-side commands over 1 000 hits per library.
      const redisPerHit = {} as Record<Library, number>
      for (const library of LIBRARIES) {
        const before = await commandsProcessed(ctx.client)
        for (const key of keys) if ((await peers[library].get(key)) === undefined) missing++
        redisPerHit[library] = Math.max(0, (await commandsProcessed(ctx.client)) - before - 1) / keys.length
      }
      const plan = {
        warmupOps: scaled(ctx, 20_000),
        rounds: Math.max(2, scaled(ctx, 10)),
        opsPerRound: scaled(ctx, 5000),
        latencyBatches: scaled(ctx, 40),
        latencyBatchOps: BATCH,
      }
      const cursor = {} as Record<Library, number>
      const getBatches = {} as Record<Library, (n: number) => Promise<void>>
      const getOrSetBatches = {} as Record<Library, (n: number) => Promise<void>>
      for (const library of LIBRARIES) {
        const peer = peers[library]
        cursor[library] = 0
        getBatches[library] = async (n) => {
          let j = cursor[library]
          let id = 0
          for (let i = 0; i < n; i++) {
            const value = await peer.get(keys[j]!)
            if (value === undefined) missing++
            else id += value.id
            if (++j === KEY_COUNT) j = 0
          }
          cursor[library] = j
          consume(id)
        }
        getOrSetBatches[library] = async (n) => {
          let j = cursor[library]
          let id = 0
          for (let i = 0; i < n; i++) {
            id += (await peer.getOrSet(keys[j]!, loader))?.id ?? 0
            if (++j === KEY_COUNT) j = 0
          }
          cursor[library] = j
          consume(id)
        }
      }
      const get = await measureBatchesAmong(plan, LIBRARIES, getBatches)
      const getOrSet = await measureBatchesAmong(plan, LIBRARIES, getOrSetBatches)
      if (missing > 0) throw new Error(`peer L1 scenario is invalid: ${missing} reads missed or loaded`)
      const toRows = (scenario: string, samples: typeof get): PeerRow[] =>
        LIBRARIES.map((library) => {
          const s = samples[library]
          const sorted = [...s.latencies].sort((a, b) => a - b)
          return {
            scenario,
            library,
            opsPerSec: 1e9 / median(s.perRound),
            perRound: s.perRound.map((ns) => 1e9 / ns),
            p50Ns: sorted[Math.ceil(0.5 * sorted.length) - 1],
            p99Ns: sorted[Math.ceil(0.99 * sorted.length) - 1],
            note:
              redisPerHit[library] > 0.01
                ? `${redisPerHit[library].toFixed(2)} Redis commands per hit`
                : '0 Redis commands per hit',
          }
        })
      method.push(
        `L1 hit get / getOrSet: ${KEY_COUNT} keys set through each library's memory-over-Redis setup ` +
          `(memory bound ${formatCount(L1_MAX)} entries), then cycled; ${formatCount(plan.warmupOps)} ` +
          `warm-up ops per library, ${plan.rounds} rounds in A B C / C B A order, a round = ` +
          `${formatCount(plan.opsPerRound)} sequential awaited ops (ops/s: median round) + ` +
          `${plan.latencyBatches} timed batches of ${BATCH} (p50/p99 are per-op means of those batches). ` +
          'All libraries go through one adapter loop (`await peer.get(k)`), so each pays the same ' +
          'adapter call; the exact layercache-vs-lru-cache ratio is the "L1 hit" row of latest.md. ' +
          'getOrSet = layercache getOrSet, bentocache getOrSet({ key, factory }), cache-manager wrap, ' +
          'cacheable getOrSet, raw: get then (never) load. Checked: every read hit (0 misses, 0 loader ' +
          'calls); the Notes column counts Redis commands per hit (server INFO, 1 000 hits per library).',
      )
      return [...toRows('L1 hit, get', get), ...toRows('L1 hit, getOrSet', getOrSet)]
    },
  )
}

/** L2 hits with no memory tier: one caller (each op timed) and 100 concurrent callers (batches timed). */
async function l2Hits(ctx: BenchContext, method: string[]): Promise<PeerRow[]> {
  const keys = makeKeys(KEY_COUNT)
  return withPeers(
    LIBRARIES,
    { url: ctx.url, prefix: `${ctx.prefix}peers:l2:`, tier: 'l2', l1Max: L1_MAX },
    async (peers) => {
      await seed(peers, keys)
      let missing = 0
      const plan = {
        warmupOps: scaled(ctx, 500),
        rounds: Math.max(2, scaled(ctx, 10)),
        opsPerRound: scaled(ctx, 300),
      }
      const one = await timeEachOp(LIBRARIES, plan, async (library, i) => {
        if ((await peers[library].get(keys[i % KEY_COUNT]!)) === undefined) missing++
      })

      const rounds = Math.max(2, scaled(ctx, 10))
      const batchesPerRound = scaled(ctx, 10)
      const many = emptySamples(LIBRARIES)
      const at = {} as Record<Library, number>
      const runBatches = async (library: Library, batches: number, latencies: number[] | undefined) => {
        const peer = peers[library]
        const calls = new Array<Promise<Product | undefined>>(CALLERS)
        for (let b = 0; b < batches; b++) {
          const t0 = nowNs()
          for (let c = 0; c < CALLERS; c++) calls[c] = peer.get(keys[at[library]++ % KEY_COUNT]!)
          const values = await Promise.all(calls)
          latencies?.push(sinceNs(t0))
          for (const value of values) if (value === undefined) missing++
        }
      }
      for (const library of LIBRARIES) at[library] = 0
      for (let w = 0; w < 2; w++) for (const library of LIBRARIES) await runBatches(library, 5, undefined)
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? LIBRARIES : [...LIBRARIES].reverse()
        for (const library of order) {
          const start = nowNs()
          await runBatches(library, batchesPerRound, many[library].latencies)
          many[library].perRound.push((batchesPerRound * CALLERS) / (sinceNs(start) / 1e9))
        }
      }
      if (missing > 0) throw new Error(`peer L2 scenario is invalid: ${missing} reads missed`)
      method.push(
        'L2 hit: each library set up with Redis alone (layercache CacheStack([RedisLayer]); bentocache a ' +
          'store with only useL2Layer(redisDriver); cache-manager stores: [redis Keyv]; cacheable ' +
          'primary: KeyvRedis, no secondary; raw: JSON.parse(await redis.get(k))), so every read goes to ' +
          `Redis; ${KEY_COUNT} keys seeded per library. 1 caller: ${plan.rounds} rounds × ` +
          `${plan.opsPerRound} sequential gets per library (A B C / C B A), each op timed (p50/p99), ` +
          `ops/s = median round. ${CALLERS} concurrent: a batch = ${CALLERS} gets started together and ` +
          `awaited with Promise.all, ${rounds} rounds × ${batchesPerRound} batches per library; ops/s = ` +
          'median round; p50/p99 are of whole-batch times. ioredis clients use enableAutoPipelining; ' +
          "Keyv's @keyv/redis uses node-redis (pipelines on its own).",
      )
      return [
        ...rowsOf('L2 hit, 1 caller', one),
        ...rowsOf(`L2 hit, ${CALLERS} concurrent`, many, () => ({ note: `p50/p99: ${CALLERS}-get batch` })),
      ]
    },
  )
}

/** Peer comparison: memory-tier hits and Redis-tier hits. */
export async function peersHits(ctx: BenchContext): Promise<ScenarioResult> {
  const method: string[] = []
  const peerRows = [...(await l1Hits(ctx, method)), ...(await l2Hits(ctx, method))]
  return { rows: [], method, peerRows }
}
