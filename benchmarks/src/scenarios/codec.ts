import { CacheStack, RedisLayer } from 'layercache'
import { type BenchContext, REDIS_TTL_MS, scaled } from '../context'
import { alternateAmong, consume, median, nowNs, orderOf, pairedRatio, percentile, sinceNs } from '../measure'
import { makeKeys, PAYLOAD, type Product } from '../payload'
import { formatNs, type Row, type ScenarioResult } from '../report'

const KEY_COUNT = 1000
const SIDES = ['msgpack', 'json'] as const
type Side = (typeof SIDES)[number]

/**
 * The default codec, measured: the same RedisLayer with `serializer: 'json'` (the default: refuses what
 * JSON cannot round-trip, such as a Date) and `serializer: 'msgpack'` (msgpackr: keeps Date, Map, Set,
 * binary), side by side in one run, for an L2 hit (`get`) and a `set` of the catalogue row.
 * Ratio: msgpack / json (above 1: msgpack slower).
 */
export async function codec(ctx: BenchContext): Promise<ScenarioResult> {
  const client = ctx.client
  const keys = makeKeys(KEY_COUNT)
  const stacks = {} as Record<Side, CacheStack>
  const stored = {} as Record<Side, number>
  for (const side of SIDES) {
    const prefix = `${ctx.prefix}codec-${side}`
    stacks[side] = new CacheStack([new RedisLayer({ client, prefix, ttl: REDIS_TTL_MS, serializer: side })])
    await stacks[side].mset(keys.map((key) => ({ key, value: PAYLOAD })))
    stored[side] = await client.strlen(`${prefix}:${keys[0]}`)
  }
  const at = { msgpack: 0, json: 0 } as Record<Side, number>
  let missing = 0
  const gets = async (side: Side, n: number, latencies?: number[]) => {
    let j = at[side]
    let id = 0
    for (let i = 0; i < n; i++) {
      const t0 = nowNs()
      const value = await stacks[side].get<Product>(keys[j]!)
      latencies?.push(sinceNs(t0))
      if (value === undefined) missing++
      else id += value.id
      if (++j === KEY_COUNT) j = 0
    }
    at[side] = j
    consume(id)
  }
  const sets = async (side: Side, n: number, latencies?: number[]) => {
    for (let i = 0; i < n; i++) {
      const t0 = nowNs()
      await stacks[side].set(keys[i % KEY_COUNT]!, PAYLOAD)
      latencies?.push(sinceNs(t0))
    }
  }
  const warmup = scaled(ctx, 2000)
  const rounds = Math.max(3, scaled(ctx, 30))
  const opsPerRound = Math.max(100, scaled(ctx, 500))
  const rows: Row[] = []
  for (const [name, op] of [
    ['get (L2 hit)', gets],
    ['set', sets],
  ] as const) {
    for (let w = 0; w < 4; w++) for (const side of orderOf(SIDES, w)) await op(side, Math.ceil(warmup / 4))
    const p50 = { msgpack: [] as number[], json: [] as number[] }
    await alternateAmong(SIDES, rounds, async (side) => {
      const latencies: number[] = []
      await op(side, opsPerRound, latencies)
      p50[side].push(percentile(latencies, 50))
    })
    const ratio = pairedRatio(p50.msgpack, p50.json)
    rows.push({
      scenario: 'Codec: msgpack vs JSON (the default)',
      metric: `${name}, p50 latency per op, msgpack / json, median of ${rounds} rounds`,
      ours: formatNs(median(p50.msgpack)),
      baseline: formatNs(median(p50.json)),
      ratio: ratio.median,
      roundRange: ratio.range,
    })
  }
  if (missing > 0) throw new Error(`Codec scenario is invalid: ${missing} reads missed`)
  rows.push({
    scenario: 'Codec: msgpack vs JSON (the default)',
    metric: 'bytes stored per entry (the catalogue row in its envelope), msgpack / json',
    ours: `${stored.msgpack} B`,
    baseline: `${stored.json} B`,
    ratio: stored.msgpack / stored.json,
  })
  return {
    rows,
    method: [
      `Codec: CacheStack([RedisLayer({ serializer })]) with 'msgpack' ("ours" column) and 'json' ("baseline" ` +
        `column), one plain client, ${KEY_COUNT} keys of the catalogue row; ${rounds} rounds × ${opsPerRound} ` +
        'sequential ops per side, sides alternating (A B / B A); ratio = median of per-round p50 ratios.',
    ],
  }
}
