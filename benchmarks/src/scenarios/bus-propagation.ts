import { performance } from 'node:perf_hooks'
import { forkWorker } from '@layercache/test-utils/worker-process'
import { Redis } from 'ioredis'
import { CacheStack, MemoryLayer, RedisInvalidationBus, RedisLayer } from 'layercache'
import type { BenchContext } from '../context'
import { scaled } from '../context'
import { alternateAmong, median, nowNs, pairedRatio, percentile, sinceNs } from '../measure'
import { formatCount, formatNs, type Row, type ScenarioResult } from '../report'
import type { BusPeerApi, BusPeerInit } from './bus-peer'

const PEER = new URL('./bus-peer.ts', import.meta.url)
const SECRET = 'benchmark-signing-secret-0123456789'
const P99_BUDGET_MS = 5
const SETTLE_MS = 200
const wallNow = () => performance.timeOrigin + performance.now()
const pause = () => new Promise((resolve) => setTimeout(resolve, 1))

/**
 * Bus propagation: one writer instance in this process, one peer instance in another process, both a
 * CacheStack(MemoryLayer, RedisLayer) with a signed RedisInvalidationBus. Each timed `cache.delete(k)`
 * resolves here; the peer notes when k left its memory. Baseline: a raw `PUBLISH` resolving here and the
 * peer's raw SUBSCRIBE receiving it. Also the cost the bus adds to a write and a delete.
 */
export async function busPropagation(ctx: BenchContext): Promise<ScenarioResult> {
  const prefix = `${ctx.prefix}bus:`
  const channel = `${prefix}channel`
  const rawChannel = `${prefix}raw`
  const peer = await forkWorker<BusPeerApi, BusPeerInit>(PEER, {
    url: ctx.url,
    prefix,
    channel,
    rawChannel,
    signingSecret: SECRET,
  })
  const client = new Redis(ctx.url)
  const subscriber = new Redis(ctx.url)
  const bus = new RedisInvalidationBus({ publisher: client, subscriber, channel, signingSecret: SECRET })
  const layers = () => [new MemoryLayer({ ttl: 600_000 }), new RedisLayer({ client, prefix })]
  const withBus = new CacheStack(layers(), { invalidationBus: bus })
  const broadcasting = new CacheStack(layers(), { invalidationBus: bus, broadcastL1Invalidation: true })
  const noBus = new CacheStack(layers())
  try {
    await bus.ready
    const perRound = scaled(ctx, 200)
    const rounds = Math.max(2, scaled(ctx, 10))
    const resolvedAt = new Map<string, number>()
    const startedAt = new Map<string, number>()
    const rawResolvedAt = new Map<string, number>()
    let n = 0
    await alternateAmong(['ours', 'raw'] as const, rounds, async (side) => {
      const keys = Array.from({ length: perRound }, () => `k${n++}`)
      if (side === 'ours') {
        await withBus.mset(keys.map((key) => ({ key, value: { key } })))
        const cached = await peer.call('cache', keys)
        if (cached !== keys.length) throw new Error(`peer cached ${cached} of ${keys.length} keys`)
        // Let both processes settle after the caching burst before the timed deletes.
        await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
        for (const key of keys) {
          startedAt.set(key, wallNow())
          await withBus.delete(key)
          resolvedAt.set(key, wallNow())
          await pause()
        }
      } else {
        for (const key of keys) {
          await client.publish(rawChannel, key)
          rawResolvedAt.set(key, wallNow())
          await pause()
        }
      }
    })
    await new Promise((resolve) => setTimeout(resolve, 100))
    const { dropped, rawArrived } = await peer.call('collect')
    const held = await peer.call('held', [...resolvedAt.keys()])
    if (held !== 0) throw new Error(`the peer still holds ${held} invalidated keys`)
    const latency = (at: Map<string, number>, arrived: [string, number][]) =>
      arrived.filter(([key]) => at.has(key)).map(([key, time]) => (time - at.get(key)!) * 1e6)
    const ours = latency(resolvedAt, dropped)
    const fromStart = latency(startedAt, dropped)
    const raw = latency(rawResolvedAt, rawArrived)
    if (ours.length !== resolvedAt.size || raw.length !== rawResolvedAt.size) {
      throw new Error(
        `lost messages: ${ours.length}/${resolvedAt.size} ours, ${raw.length}/${rawResolvedAt.size} raw`,
      )
    }

    // The write cost: the same stack shape with and without the bus (delete) / broadcast (set).
    const costRounds = Math.max(2, scaled(ctx, 20))
    const ops = scaled(ctx, 300)
    const p50 = { set: [] as number[], setBus: [] as number[], del: [] as number[], delBus: [] as number[] }
    type CostSide = keyof typeof p50
    const costOf: Record<CostSide, (key: string) => Promise<void>> = {
      set: (key) => noBus.set(key, { key }),
      setBus: (key) => broadcasting.set(key, { key }),
      del: (key) => noBus.delete(key),
      delBus: (key) => withBus.delete(key),
    }
    let m = 0
    await alternateAmong(['set', 'setBus', 'del', 'delBus'] as const, costRounds, async (side) => {
      const latencies: number[] = []
      for (let i = 0; i < ops; i++) {
        const key = `w${m++ % 1000}`
        const t0 = nowNs()
        await costOf[side](key)
        latencies.push(sinceNs(t0))
      }
      p50[side].push(percentile(latencies, 50))
    })

    const scenario = 'Bus propagation (peer in another process)'
    const rows: Row[] = [50, 99].map((p) => ({
      scenario,
      metric: `p${p}: delete() resolved → peer dropped the key, vs raw PUBLISH resolved → raw subscriber got it`,
      ours: formatNs(percentile(ours, p)),
      baseline: formatNs(percentile(raw, p)),
      ratio: percentile(ours, p) / percentile(raw, p),
    }))
    const p99 = percentile(ours, 99)
    rows.push({
      scenario,
      metric: `p99 delete() resolved → peer dropped, over ${formatCount(ours.length)} deletes, vs the budget`,
      ours: formatNs(p99),
      baseline: `${P99_BUDGET_MS} ms`,
      ratio: p99 / (P99_BUDGET_MS * 1e6),
      budget: { text: `≤ ${P99_BUDGET_MS} ms`, maxRatio: 1 },
    })
    rows.push({
      scenario,
      metric: 'p50 / p99: delete() called → peer dropped the key (the whole invalidation)',
      ours: `${formatNs(percentile(fromStart, 50))} / ${formatNs(percentile(fromStart, 99))}`,
      baseline: '',
      ratio: Number.NaN,
    })
    const costScenario = 'Bus cost on writes'
    const setRatio = pairedRatio(p50.setBus, p50.set)
    rows.push({
      scenario: costScenario,
      metric: `set() p50 with bus + broadcastL1Invalidation vs without a bus, median of ${costRounds} rounds`,
      ours: formatNs(median(p50.setBus)),
      baseline: formatNs(median(p50.set)),
      ratio: setRatio.median,
      roundRange: setRatio.range,
    })
    const delRatio = pairedRatio(p50.delBus, p50.del)
    rows.push({
      scenario: costScenario,
      metric: `delete() p50 with bus vs without, median of ${costRounds} rounds`,
      ours: formatNs(median(p50.delBus)),
      baseline: formatNs(median(p50.del)),
      ratio: delRatio.median,
      roundRange: delRatio.range,
    })
    return {
      rows,
      method: [
        `${scenario}: writer in the benchmark process, peer in a forked process, each CacheStack([MemoryLayer, ` +
          'RedisLayer]) with its own RedisInvalidationBus (signed, HMAC-SHA256) on its own connections to the ' +
          `same Redis. ${rounds} rounds × ${perRound} keys per side, sides alternating: ours = the writer sets ` +
          'the keys, the peer reads them into memory, then each key is deleted one at a time (1 ms apart, so ' +
          'no two share a message); baseline = raw `PUBLISH` of the key on another channel the peer SUBSCRIBEs ' +
          'to with plain ioredis. Times are performance.timeOrigin + performance.now() in each process (same ' +
          'host clock); latency = peer time − writer time, so it can be slightly negative. Checked: every ' +
          'message arrived and the peer holds none of the deleted keys.',
        `${costScenario}: p50 of ${ops} sequential set() (resp. delete()) per round on CacheStack([MemoryLayer, ` +
          'RedisLayer]) with a bus (set: broadcastL1Invalidation) vs the same without, 1000 keys cycled, ' +
          `${costRounds} rounds, sides alternating; ratio = median of per-round ratios.`,
      ],
    }
  } finally {
    await peer.stop().catch(() => peer.kill())
    withBus.close()
    broadcasting.close()
    await bus.close()
    await noBus.layers[1]!.clear()
    client.disconnect()
    subscriber.disconnect()
  }
}
