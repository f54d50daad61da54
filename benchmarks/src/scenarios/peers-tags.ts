import { type BenchContext, scaled } from '../context'
import { median, nowNs, sinceNs } from '../measure'
import { makeKeys, PAYLOAD } from '../payload'
import { LIBRARIES, type Library, withPeers } from '../peers'
import type { PeerRow } from '../peers-report'
import { formatCount, type ScenarioResult } from '../report'

/** Key counts and timed rounds per library at BENCH_SCALE=1; seeding (not timed) dominates the time. */
const SIZES = [
  { keys: 1000, rounds: 5 },
  { keys: 10_000, rounds: 3 },
  { keys: 100_000, rounds: 1 },
] as const
/** Tagged sets in flight while seeding: layercache's (slower) tagged writes in larger bursts trip its 1 s
 * command timeout on a busy 2-core machine; the others take bigger bursts. Not timed either way. */
const SEED_CHUNK: Record<Library, number> = {
  layercache: 100,
  bentocache: 1000,
  'cache-manager': 1000,
  cacheable: 1000,
  raw: 1000,
}
const SAMPLE = 50
/** Libraries that have tag invalidation; cache-manager has none. */
const TAGGED: readonly Library[] = LIBRARIES.filter((l) => l !== 'cache-manager')

/** Peer comparison: invalidating every key of one tag, at 1k / 10k / 100k tagged keys. */
export async function peersTags(ctx: BenchContext): Promise<ScenarioResult> {
  const peerRows: PeerRow[] = []
  const runs: string[] = []
  for (const size of SIZES) {
    const keyCount = size.keys
    const rounds = Math.max(1, scaled(ctx, size.rounds))
    const keys = makeKeys(keyCount)
    const sample = keys.filter((_, i) => i % Math.max(1, Math.floor(keyCount / SAMPLE)) === 0)
    const ns = {} as Record<Library, number[]>
    const failed = new Map<Library, string>()
    for (const library of TAGGED) ns[library] = []
    await withPeers(
      TAGGED,
      {
        url: ctx.url,
        prefix: `${ctx.prefix}peers:tags${keyCount}:`,
        tier: 'both',
        l1Max: keyCount * 2,
        tags: true,
        autoPipelining: false,
      },
      async (peers) => {
        for (let round = 0; round < rounds; round++) {
          const order = round % 2 === 0 ? TAGGED : [...TAGGED].reverse()
          for (const library of order) {
            if (failed.has(library)) continue
            const peer = peers[library]
            const tag = `tag-${keyCount}-${round}`
            const chunk = SEED_CHUNK[library]
            for (let i = 0; i < keyCount; i += chunk) {
              await Promise.all(keys.slice(i, i + chunk).map((key) => peer.set(key, PAYLOAD, [tag])))
            }
            for (const key of sample) {
              if ((await peer.get(key)) === undefined)
                throw new Error(`${library}: ${key} missing after seeding`)
            }
            const t0 = nowNs()
            try {
              await peer.deleteByTag!(tag)
            } catch (error) {
              // Reported in the table as a failure of this library at this size; the others go on.
              const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
              failed.set(library, message.split('\n')[0]!)
              process.stderr.write(`  ${library} tag invalidation at ${keyCount} keys FAILED: ${message}\n`)
              continue
            }
            ns[library].push(sinceNs(t0))
            for (const key of sample) {
              if ((await peer.get(key)) !== undefined) {
                throw new Error(`${library}: ${key} still readable after invalidating its tag`)
              }
            }
          }
        }
      },
    )
    process.stderr.write(`  tag invalidation at ${formatCount(keyCount)} keys done\n`)
    runs.push(`${formatCount(keyCount)} keys: ${rounds} round${rounds === 1 ? '' : 's'}`)
    const scenario = `Tag invalidation, ${formatCount(keyCount)} keys`
    for (const library of LIBRARIES) {
      if (library === 'cache-manager') {
        peerRows.push({ scenario, library, unsupported: 'no tags in cache-manager 7' })
        continue
      }
      const times = ns[library]
      if (times.length === 0) {
        peerRows.push({ scenario, library, failed: failed.get(library) ?? 'no timed round' })
        continue
      }
      const med = median(times)
      peerRows.push({
        scenario,
        library,
        opsPerSec: 1e9 / med,
        perRound: times.map((t) => 1e9 / t),
        p50Ns: med,
        p99Ns: Math.max(...times),
        note:
          library === 'bentocache' || library === 'cacheable'
            ? 'lazy: entries stay until read'
            : library === 'raw'
              ? 'knows its key list'
              : 'deletes every key',
      })
    }
  }
  return {
    rows: [],
    peerRows,
    method: [
      'Tag invalidation: N keys set with one tag through each library (memory + Redis, memory bound 2 × N, ' +
        'ioredis clients without auto-pipelining as in the budget scenario; ' +
        `re-seeded before every timed call, not timed), then one timed invalidation (${runs.join(', ')} per ` +
        'library, A B C / C B A): layercache invalidateByTag, bentocache deleteByTag({ tags }), cacheable ' +
        '(tags: true) cache.tags.invalidateTag, raw: one pipeline of UNLINK commands of 500 of the keys it ' +
        'recorded for the tag each (best case: knows its key list) plus lru.delete. ops/s = 1 / median time; p50 = median, ' +
        'p99 = the slowest round (few rounds). Semantics differ: bentocache and cacheable invalidate lazily ' +
        '(one write of a tag timestamp; the tagged entries stay in memory and Redis and are dropped when ' +
        'a later read finds them older than the tag, which costs that read an extra tag lookup); layercache ' +
        'and raw remove every key from memory and Redis before resolving. Checked for every library: ' +
        `${SAMPLE} sampled keys readable before and unreadable after. cache-manager 7 has no tags: "not ` +
        'supported".',
    ],
  }
}
