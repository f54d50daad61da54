import { forkWorker, type WorkerHandle } from '@layercache/test-utils/worker-process'
import type { BenchContext } from '../context'
import { alternateAmong, median, nowNs, pairedRatio, sinceNs } from '../measure'
import { formatCount, formatNs, type Row, type ScenarioResult } from '../report'
import type { FleetPeerApi, FleetPeerInit, FleetSide } from './fleet-peer'

const PEER = new URL('./fleet-peer.ts', import.meta.url)
const PROCESSES = 4
const PER_PROCESS = 250
const LOAD_MS = 20
const SIDES: readonly FleetSide[] = ['coordinated', 'local']

interface Round {
  readonly calls: number
  readonly ns: number
  readonly waits: number
  readonly answers: number
  readonly degraded: number
}

/** One stampede: every process fires its getOrSet calls of one cold key at once; done when all answered. */
async function stampede(peers: readonly WorkerHandle<FleetPeerApi>[], side: FleetSide, key: string) {
  const t0 = nowNs()
  const results = await Promise.all(peers.map((peer) => peer.call('run', side, key, PER_PROCESS, LOAD_MS)))
  const ns = sinceNs(t0)
  const sum = (f: (stats: (typeof results)[number]['stats']) => number) =>
    results.reduce((total, result) => total + f(result.stats), 0)
  return {
    calls: results.reduce((total, result) => total + result.calls, 0),
    ns,
    waits: sum((s) => s.coordinatedWaits),
    answers: sum((s) => s.coordinatedAnswers),
    degraded: sum((s) => s.uncoordinatedLoads + s.coordinatorErrors),
  }
}

/**
 * Fleet stampede: PROCESSES forked app processes (CacheStack(MemoryLayer, RedisLayer) each, one Redis)
 * miss the same cold key PER_PROCESS times each, concurrently, in front of a LOAD_MS "database". With a
 * RedisSingleFlightCoordinator the fleet runs one loader (DESIGN budget: exactly 1); without it, local
 * single-flight runs one per process. Also the time until all of them were answered.
 */
export async function fleetStampede(ctx: BenchContext): Promise<ScenarioResult> {
  const prefix = `${ctx.prefix}fleet:`
  const peers = await Promise.all(
    Array.from({ length: PROCESSES }, () =>
      forkWorker<FleetPeerApi, FleetPeerInit>(PEER, { url: ctx.url, prefix }),
    ),
  )
  try {
    const rounds = Math.max(4, Math.round(20 * ctx.scale))
    let n = 0
    // Connections, the coordinator's subscription and the JIT warm up first (not counted).
    for (let i = 0; i < 3; i++) for (const side of SIDES) await stampede(peers, side, `warm-up:${n++}`)
    const results: Record<FleetSide, Round[]> = { coordinated: [], local: [] }
    await alternateAmong(SIDES, rounds, async (side) => {
      results[side].push(await stampede(peers, side, `cold:${n++}`))
    })

    const ours = results.coordinated
    const base = results.local
    const scenario = `Fleet stampede: ${PROCESSES} processes × ${PER_PROCESS} getOrSet of 1 cold key`
    const callsOf = (r: Round) => r.calls
    const maxCalls = Math.max(...ours.map(callsOf))
    const minCalls = Math.min(...ours.map(callsOf))
    const time = pairedRatio(
      ours.map((r) => r.ns),
      base.map((r) => r.ns),
    )
    const rows: Row[] = [
      {
        scenario,
        metric: `loader calls per stampede, coordinator vs local single-flight only, median of ${rounds} rounds`,
        ours: formatCount(median(ours.map(callsOf))),
        baseline: formatCount(median(base.map(callsOf))),
        ratio: median(ours.map(callsOf)) / median(base.map(callsOf)),
      },
      {
        scenario,
        metric: `loader calls per stampede with the coordinator, every one of ${rounds} rounds, vs the budget`,
        ours: minCalls === maxCalls ? formatCount(maxCalls) : `${minCalls}–${maxCalls}`,
        baseline: '1',
        ratio: maxCalls === 1 && minCalls === 1 ? 1 : maxCalls,
        budget: { text: 'exactly 1 loader call', maxRatio: 1, minRatio: 1 },
      },
      {
        scenario,
        metric: `time until all ${formatCount(PROCESSES * PER_PROCESS)} answered (${LOAD_MS} ms loader), median of ${rounds} rounds`,
        ours: formatNs(median(ours.map((r) => r.ns))),
        baseline: formatNs(median(base.map((r) => r.ns))),
        ratio: time.median,
        roundRange: time.range,
      },
    ]
    const sum = (list: readonly Round[], f: (r: Round) => number) => list.reduce((t, r) => t + f(r), 0)
    const coordinator = await Promise.all(peers.map((peer) => peer.call('coordinatorStats')))
    const notified = coordinator.reduce((t, s) => t + s.notified, 0)
    const polled = coordinator.reduce((t, s) => t + s.polled, 0)
    return {
      rows,
      method: [
        `Fleet stampede: ${PROCESSES} forked processes (\`forkWorker\`, tsx), each a CacheStack([MemoryLayer, ` +
          'RedisLayer]) on its own ioredis connection to the run’s Redis; per round a new cold key, every ' +
          `process fires ${PER_PROCESS} concurrent \`getOrSet(key, loader)\` (one IPC call each, sent in one ` +
          `loop), the loader sleeps ${LOAD_MS} ms (a database query) and counts its calls. Ours: stacks with ` +
          '`singleFlightCoordinator: new RedisSingleFlightCoordinator({ client })` (defaults); baseline: the ' +
          'same stacks without it (local single-flight only). Time = from sending the calls until the last ' +
          `process answered all of its ${PER_PROCESS} (includes the IPC round trip), per round.`,
        `Fleet stampede: 3 warm-up rounds per side, then ${rounds} rounds per side in A B / B A order. ` +
          `With the coordinator: ${formatCount(sum(ours, callsOf))} loader calls in ${rounds} rounds, ` +
          `${formatCount(sum(ours, (r) => r.waits))} waits for another process’s load, ` +
          `${formatCount(sum(ours, (r) => r.answers))} answered by it, ${formatCount(sum(ours, (r) => r.degraded))} ` +
          `loads without a lease or coordinator errors; waits ended by a notification / by polling (all rounds ` +
          `incl. warm-up): ${formatCount(notified)} / ${formatCount(polled)}. Without: ` +
          `${formatCount(sum(base, callsOf))} loader calls.`,
      ],
    }
  } finally {
    await Promise.all(peers.map((peer) => peer.stop()))
  }
}
