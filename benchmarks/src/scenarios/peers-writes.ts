import { type BenchContext, scaled } from '../context'
import { median, nowNs, sinceNs } from '../measure'
import { makeKeys, PAYLOAD, type Product } from '../payload'
import { buildPeer, LIBRARIES, type Library, withPeers } from '../peers'
import type { PeerRow } from '../peers-report'
import { formatCount, type ScenarioResult } from '../report'
import { emptySamples, rowsOf, sleep } from './peers-common'

const L1_MAX = 10_000
const STAMPEDE_CALLERS = 200
const LOADER_MS = 10

/** N concurrent getOrSet calls on a key no tier has, with a slow loader: loader calls and time. */
async function stampede(ctx: BenchContext, method: string[]): Promise<PeerRow[]> {
  return withPeers(
    LIBRARIES,
    { url: ctx.url, prefix: `${ctx.prefix}peers:stampede:`, tier: 'both', l1Max: L1_MAX },
    async (peers) => {
      const rounds = Math.max(2, scaled(ctx, 20))
      const samples = emptySamples(LIBRARIES)
      const loaderCalls = {} as Record<Library, number[]>
      for (const library of LIBRARIES) loaderCalls[library] = []
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? LIBRARIES : [...LIBRARIES].reverse()
        for (const library of order) {
          const peer = peers[library]
          const key = `cold:${round}`
          let calls = 0
          const loader = async (): Promise<Product> => {
            calls++
            await sleep(LOADER_MS)
            return { ...PAYLOAD, id: round }
          }
          const start = nowNs()
          const pending: Promise<number>[] = []
          for (let c = 0; c < STAMPEDE_CALLERS; c++) {
            pending.push(
              peer.getOrSet(key, loader).then((value) => {
                if (value?.id !== round) throw new Error(`${library} stampede answered ${String(value?.id)}`)
                return sinceNs(start)
              }),
            )
          }
          const times = await Promise.all(pending)
          const total = sinceNs(start)
          samples[library].latencies.push(...times)
          samples[library].perRound.push(STAMPEDE_CALLERS / (total / 1e9))
          loaderCalls[library].push(calls)
        }
      }
      method.push(
        `Cold-key stampede: ${STAMPEDE_CALLERS} concurrent getOrSet calls (started in one loop, awaited ` +
          `together) on a key no tier holds, loader = ${LOADER_MS} ms timer; a new key every round, ` +
          `${rounds} rounds per library (A B C / C B A). ops/s = callers / time until the last caller ` +
          'answered (median round); p50/p99 = per-caller time to its answer; Other = loader calls per ' +
          'stampede (median, max). Checked: every caller got the loaded value. raw is naive cache-aside.',
      )
      return rowsOf('getOrSet, cold-key stampede', samples, (library) => {
        const calls = loaderCalls[library]
        const med = median(calls)
        const max = Math.max(...calls)
        return {
          extra: `loader calls/stampede: ${med}${max === med ? '' : ` (max ${max})`}`,
        }
      })
    },
  )
}

function heapNow(): number {
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

function collect(gc: () => void): void {
  for (let i = 0; i < 3; i++) gc()
}

/** Heap per cached entry: fill the memory tier with N distinct values, heap after − before, per entry. */
async function memoryPerEntry(ctx: BenchContext, method: string[]): Promise<PeerRow[]> {
  const entries = scaled(ctx, 10_000)
  const repeats = Math.max(1, scaled(ctx, 2))
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) {
    method.push('Memory per entry: not measured (needs node --expose-gc; the bench script passes it).')
    return []
  }
  const keys = makeKeys(entries)
  const perEntry = {} as Record<Library, number[]>
  for (const library of LIBRARIES) perEntry[library] = []
  for (let r = 0; r < repeats; r++) {
    const order = r % 2 === 0 ? LIBRARIES : [...LIBRARIES].reverse()
    for (const library of order) {
      const peer = await buildPeer(library, {
        url: ctx.url,
        prefix: `${ctx.prefix}peers:mem${r}:${library}:`,
        tier: 'both',
        l1Max: entries * 2,
      })
      try {
        // One warm-up entry, so lazily created structures are not billed to the entries.
        await peer.set('warm', { ...PAYLOAD })
        collect(gc)
        const before = heapNow()
        for (let i = 0; i < entries; i += 500) {
          await Promise.all(keys.slice(i, i + 500).map((key, j) => peer.set(key, { ...PAYLOAD, id: i + j })))
        }
        await sleep(20)
        collect(gc)
        perEntry[library].push((heapNow() - before) / entries)
        const probe = await peer.get(keys[entries - 1]!)
        if (probe?.id !== entries - 1) throw new Error(`${library} memory fill lost its last entry`)
      } finally {
        await peer.close()
      }
    }
  }
  method.push(
    `Memory per entry: a fresh two-tier instance per library, one warm-up entry, 3 × gc(), heap (heapUsed + ` +
      `arrayBuffers), then ${formatCount(entries)} sets of distinct values (a shallow copy of the payload ` +
      'each, as a loader would return) in batches of 500, 3 × gc(), heap again; (after − before) / entries. ' +
      `Memory bound 2 × entries, so nothing is evicted. Median of ${repeats} fills per library. Includes ` +
      'the value itself as each library keeps it (bentocache serialises it to a string by default; Keyv ' +
      'stores keep their own wrapper), and whatever the library keeps per key in the process.',
  )
  return LIBRARIES.map((library) => {
    const bytes = median(perEntry[library])
    return {
      scenario: `Memory per entry (${formatCount(entries)} entries)`,
      library,
      extra: `${bytes.toFixed(0)} B/entry`,
      compare: { value: bytes, higherIsBetter: false, what: 'bytes per entry' },
    }
  })
}

/** Peer comparison: stampede protection and memory cost (the tiered set is peers-set.ts). */
export async function peersWrites(ctx: BenchContext): Promise<ScenarioResult> {
  const method: string[] = []
  const peerRows = [...(await stampede(ctx, method)), ...(await memoryPerEntry(ctx, method))]
  return { rows: [], method, peerRows }
}
