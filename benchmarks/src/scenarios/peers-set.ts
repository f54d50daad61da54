import { type BenchContext, scaled } from '../context'
import { median, pairedRatio } from '../measure'
import { makeKeys, PAYLOAD } from '../payload'
import { LIBRARIES, LIBRARY_LABEL, type Library, PEERS, withPeers } from '../peers'
import { formatCount, formatRate, type Row, type ScenarioResult } from '../report'
import { rowsOf, timeEachOp } from './peers-common'

const KEY_COUNT = 1000
const L1_MAX = 10_000

/**
 * Tiered `set` throughput, every library in every round: the peers table's "Tiered set" rows, and the
 * budget row "ours ≥ the best peer" (DESIGN.md: `set` throughput at least the best peer's in the same run)
 * as paired per-round ratios against the peer with the best median round.
 */
export async function peersSet(ctx: BenchContext): Promise<ScenarioResult> {
  const keys = makeKeys(KEY_COUNT)
  return withPeers(
    LIBRARIES,
    { url: ctx.url, prefix: `${ctx.prefix}peers:set:`, tier: 'both', l1Max: L1_MAX },
    async (peers) => {
      // Rounds long enough (hundreds of ms per library) that a GC pause or a noisy neighbour in the tail
      // moves a round's throughput by a few per cent, not by a factor.
      const plan = {
        warmupOps: Math.max(500, scaled(ctx, 2000)),
        rounds: Math.max(3, scaled(ctx, 10)),
        opsPerRound: Math.max(300, scaled(ctx, 2000)),
      }
      const samples = await timeEachOp(LIBRARIES, plan, (library, i) =>
        peers[library].set(keys[i % KEY_COUNT]!, PAYLOAD),
      )
      let missing = 0
      for (const library of LIBRARIES)
        for (const key of keys.slice(0, 50)) if ((await peers[library].get(key)) === undefined) missing++
      if (missing > 0) throw new Error(`peer set scenario is invalid: ${missing} keys not readable after set`)

      const ours = samples.layercache.perRound
      let best: Library = PEERS[0]!
      for (const peer of PEERS)
        if (median(samples[peer].perRound) > median(samples[best].perRound)) best = peer
      const rows: Row[] = []
      for (const other of [best, ...PEERS.filter((p) => p !== best), 'raw' as const]) {
        const paired = pairedRatio(ours, samples[other].perRound)
        const isBest = other === best
        rows.push({
          scenario: isBest ? 'Set throughput vs the best peer' : `Set throughput vs ${LIBRARY_LABEL[other]}`,
          metric:
            `tiered set(k, payload), ops/s per round, layercache vs ${LIBRARY_LABEL[other]}` +
            `${isBest ? ' (the peer with the best median round)' : ''}, median of ${plan.rounds} paired rounds`,
          ours: formatRate(median(ours)),
          baseline: formatRate(median(samples[other].perRound)),
          ratio: paired.median,
          roundRange: paired.range,
          budget: isBest ? { text: '≥ 1.0× best peer', minRatio: 1 } : undefined,
        })
      }
      const method = [
        `Tiered set: \`set(k, payload)\` into memory and Redis (default TTLs), ${plan.rounds} rounds × ` +
          `${formatCount(plan.opsPerRound)} sequential awaited sets per library (A B C / C B A) after ` +
          `${formatCount(plan.warmupOps)} warm-up sets, cycling ${KEY_COUNT} keys; each op timed ` +
          '(p50/p99), ops/s = median round. Checked afterwards: keys read back.',
      ]
      const ownMethod = [
        'Set throughput vs peers: the "Tiered set" of the peer comparison (set-ups in results/peers.md: every ' +
          'library with its memory tier over the same Redis, ioredis with auto-pipelining where the library ' +
          `takes ioredis), ${plan.rounds} rounds × ${formatCount(plan.opsPerRound)} sequential awaited sets per ` +
          `library, all five libraries in every round (A B C D E / E D C B A), after ${formatCount(plan.warmupOps)} ` +
          'warm-up sets each. Per round, ours ops/s / that peer\u2019s ops/s of the same round; the row\u2019s ' +
          'ratio is the median of these paired ratios. "The best peer" = the peer library (bentocache, ' +
          'cache-manager, cacheable) with the highest median round; the budget row compares with it, the ' +
          'others and raw lru-cache + ioredis are info.',
      ]
      return { rows, method, ownMethod, peerRows: rowsOf('Tiered set', samples) }
    },
  )
}
