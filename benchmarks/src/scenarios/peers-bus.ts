import { type BenchContext, scaled } from '../context'
import { nowNs, sinceNs } from '../measure'
import { makeKeys, PAYLOAD } from '../payload'
import { buildPeer, type Library, type PeerCache } from '../peers'
import type { PeerRow } from '../peers-report'
import type { ScenarioResult } from '../report'
import { emptySamples, rowsOf, sleep } from './peers-common'

/** Libraries with a memory-invalidation bus over Redis. */
const BUSSED: readonly Library[] = ['layercache', 'bentocache']
const DROP_TIMEOUT_MS = 1000

/**
 * Peer comparison: two instances of one library in this process, each with its memory tier, the same
 * Redis and a bus; `await writer.delete(k)` → the reader's memory drops k.
 */
export async function peersBus(ctx: BenchContext): Promise<ScenarioResult> {
  const count = scaled(ctx, 500)
  const rounds = 4
  const perRound = Math.ceil(count / rounds)
  const keys = makeKeys(perRound * rounds)
  const samples = emptySamples(BUSSED)
  const resolvedToDrop = {} as Record<Library, number[]>
  const pairs = {} as Record<Library, { writer: PeerCache; reader: PeerCache }>
  const waiting = new Map<string, () => void>()
  try {
    for (const library of BUSSED) {
      const o = {
        url: ctx.url,
        prefix: `${ctx.prefix}peers:bus:${library}:`,
        tier: 'both' as const,
        l1Max: keys.length * 2,
        bus: true,
      }
      const writer = await buildPeer(library, o)
      const reader = await buildPeer(library, o)
      reader.onPeerDrop?.((dropped) => {
        for (const key of dropped) {
          const done = waiting.get(`${library}:${key}`)
          if (done !== undefined) done()
        }
      })
      pairs[library] = { writer, reader }
      resolvedToDrop[library] = []
      for (const key of keys) await writer.set(key, PAYLOAD)
    }
    await sleep(200)
    for (const library of BUSSED) {
      for (const key of keys) {
        if ((await pairs[library].reader.get(key)) === undefined) throw new Error(`${library} reader miss`)
      }
    }
    await sleep(200)
    let at = 0
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? BUSSED : [...BUSSED].reverse()
      const first = at
      for (const library of order) {
        const { writer } = pairs[library]
        const start = nowNs()
        for (let i = first; i < first + perRound; i++) {
          const key = keys[i]!
          let dropped = 0
          const seen = new Promise<void>((resolve, reject) => {
            const timer = setTimeout(
              () => reject(new Error(`${library}: no drop of ${key} in 1 s`)),
              DROP_TIMEOUT_MS,
            )
            waiting.set(`${library}:${key}`, () => {
              dropped = sinceNs(t0)
              clearTimeout(timer)
              resolve()
            })
          })
          const t0 = nowNs()
          await writer.delete(key)
          const resolved = sinceNs(t0)
          await seen
          waiting.delete(`${library}:${key}`)
          samples[library].latencies.push(dropped)
          resolvedToDrop[library].push(Math.max(0, dropped - resolved))
        }
        samples[library].perRound.push(perRound / (sinceNs(start) / 1e9))
      }
      at += perRound
    }
  } finally {
    for (const pair of Object.values(pairs)) {
      await pair.writer.close()
      await pair.reader.close()
    }
  }
  const rows = rowsOf('Bus propagation, delete → other instance drops', samples, (library) => {
    const sorted = [...resolvedToDrop[library]].sort((a, b) => a - b)
    const p99 = sorted[Math.ceil(0.99 * sorted.length) - 1] ?? 0
    return {
      extra: `after delete() resolved: p99 ${(p99 / 1e6).toFixed(2)} ms`,
      compare: {
        value: (rowsP99(samples[library].latencies) ?? Number.NaN) / 1e6,
        higherIsBetter: false,
        what: 'p99 delete() called → peer dropped',
      },
    }
  })
  const peerRows: PeerRow[] = [
    ...rows,
    ...(['cache-manager', 'cacheable'] as const).map((library) => ({
      scenario: 'Bus propagation, delete → other instance drops',
      library,
      unsupported:
        library === 'cacheable'
          ? 'CacheableSync (pub/sub via qified) exists but was not set up here'
          : 'no invalidation bus in cache-manager 7',
    })),
  ]
  return {
    rows: [],
    peerRows,
    method: [
      `Bus propagation: per library two instances in this process (writer, reader), memory + Redis + bus ` +
        '(layercache: signed RedisInvalidationBus on its own subscriber connection; bentocache: ' +
        'useBus(redisBusDriver)), on the same Redis; keys set by the writer and read once by the reader ' +
        `(so its memory holds them); then ${perRound * rounds} sequential \`await writer.delete(k)\` per ` +
        `library in ${rounds} rounds (A B / B A), each waiting until the reader reports the drop (layercache ` +
        "'peerInvalidation' event; bentocache 'bus:message:received', emitted in the tick that deletes from " +
        'its memory). p50/p99 = delete() called → reader dropped; Other = p99 from delete() resolved; ' +
        'ops/s = delete+propagation cycles per second. Same process, so no cross-process clock issue but ' +
        'also no separate event loop: the Bus propagation row of latest.md (forked peer) is the budgeted ' +
        'number. cacheable has CacheableSync (qified pub/sub, needs @qified/redis), not set up here.',
    ],
  }
}

function rowsP99(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.ceil(0.99 * sorted.length) - 1]
}
