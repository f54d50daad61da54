import { availableParallelism, cpus, loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import type { BenchContext } from './context'
import { nowNs, sinceNs } from './measure'
import { PAYLOAD_JSON } from './payload'
import { LIBRARIES, LIBRARY_LABEL, LIBRARY_SETUP, peerVersions } from './peers'
import { type PeerRow, peerMarkdown, peerSummary, peerSvg, peerTable } from './peers-report'
import { getRedisTarget, redisVersion } from './redis-target'
import { markdownReport, type Row, summaryLine, textTable, writeReport } from './report'
import { busPropagation } from './scenarios/bus-propagation'
import { codec } from './scenarios/codec'
import { diagnostics } from './scenarios/diagnostics'
import { entityInvalidation } from './scenarios/entity-invalidation'
import { expiryStorm } from './scenarios/expiry-storm'
import { fleetStampede } from './scenarios/fleet-stampede'
import { freshnessL1 } from './scenarios/freshness-l1'
import { httpMiddleware } from './scenarios/http-middleware'
import { keyvAdapter } from './scenarios/keyv-adapter'
import { l1Heap } from './scenarios/l1-heap'
import { l1Hit } from './scenarios/l1-hit'
import { l2Concurrent } from './scenarios/l2-concurrent'
import { l2Hit } from './scenarios/l2-hit'
import { missAndDelete } from './scenarios/miss-delete'
import { nestRoute } from './scenarios/nest-route'
import { peersBus } from './scenarios/peers-bus'
import { peersHits } from './scenarios/peers-hits'
import { peersSet } from './scenarios/peers-set'
import { peersTags } from './scenarios/peers-tags'
import { peersWrites } from './scenarios/peers-writes'
import { prefixInvalidation } from './scenarios/prefix-invalidation'
import { redisMemory } from './scenarios/redis-memory'
import { tagInvalidation } from './scenarios/tag-invalidation'
import { writeBehind } from './scenarios/write-behind'
import { writes } from './scenarios/writes'

const RESULTS = fileURLToPath(new URL('../results/latest.md', import.meta.url))
const PEER_RESULTS = fileURLToPath(new URL('../results/peers.md', import.meta.url))
const PEER_CHART = fileURLToPath(new URL('../results/peers.svg', import.meta.url))

const SCENARIOS = [
  { name: 'L1 hit', run: l1Hit },
  { name: 'L2 hit, 1 caller', run: l2Hit },
  { name: 'Codec: msgpack vs JSON', run: codec },
  { name: 'Writes, 1 caller', run: writes },
  { name: 'getOrSet miss and delete', run: missAndDelete },
  { name: 'L2 hit, 100 concurrent', run: l2Concurrent },
  { name: 'Freshness options, L1 hit', run: freshnessL1 },
  { name: 'Heap per L1 entry', run: l1Heap },
  { name: 'Hot-key expiry storm', run: expiryStorm },
  { name: 'Fleet stampede', run: fleetStampede },
  { name: 'Tag invalidation', run: tagInvalidation },
  { name: 'Redis memory per entry', run: redisMemory },
  { name: 'Prefix invalidation', run: prefixInvalidation },
  { name: 'Write-behind vs synchronous database writes', run: writeBehind },
  { name: 'Bus propagation and cost', run: busPropagation },
  { name: 'Entity invalidation', run: entityInvalidation },
  { name: 'Diagnostics channels', run: diagnostics },
  { name: 'HTTP middleware, cached response', run: httpMiddleware },
  { name: 'Keyv adapter (cache-manager)', run: keyvAdapter },
  { name: 'NestJS route', run: nestRoute },
  // Against peer libraries (results/peers.md, peers.svg); BENCH_ONLY=peers runs only these.
  { name: 'Peers: hits', run: peersHits },
  { name: 'Peers: set throughput', run: peersSet },
  { name: 'Peers: stampede, memory', run: peersWrites },
  { name: 'Peers: tag invalidation', run: peersTags },
  { name: 'Peers: bus propagation', run: peersBus },
] as const

const isPeerScenario = (name: string) => name.startsWith('Peers: ')

function parseScale(text: string | undefined): number {
  if (text === undefined || text === '') return 1
  const scale = Number(text)
  if (!Number.isFinite(scale) || scale <= 0) throw new Error(`BENCH_SCALE must be a positive number: ${text}`)
  return scale
}

function progress(line: string): void {
  process.stderr.write(`${line}\n`)
}

async function main(): Promise<number> {
  const scale = parseScale(process.env.BENCH_SCALE)
  const started = new Date()
  const loadAtStart = loadavg()[0]!
  const t0 = nowNs()
  const target = await getRedisTarget()
  const rows: Row[] = []
  const method: string[] = []
  const peerRows: PeerRow[] = []
  const peerMethod: string[] = []
  let ranOwn = false
  const failures: string[] = []
  let version = 'unknown'
  try {
    const client = await target.connect()
    const pipelinedClient = await target.connect({ enableAutoPipelining: true })
    version = await redisVersion(client)
    progress(`Redis ${version}: ${target.source}`)
    const ctx: BenchContext = {
      client,
      pipelinedClient,
      url: target.url,
      prefix: target.prefix,
      redisSpawned: target.spawned,
      scale,
    }
    // BENCH_ONLY=tag runs only the scenarios whose name contains "tag" (case-insensitive); the peer
    // scenarios only run under a BENCH_ONLY that says "peer" (BENCH_ONLY=peers: all of them).
    const only = process.env.BENCH_ONLY?.toLowerCase()
    for (const scenario of SCENARIOS) {
      const peer = isPeerScenario(scenario.name)
      if (only && !scenario.name.toLowerCase().includes(only)) continue
      if (only && peer && !only.includes('peer')) continue
      if (!peer) ranOwn = true
      progress(`running ${scenario.name} …`)
      const s0 = nowNs()
      try {
        const result = await scenario.run(ctx)
        rows.push(...result.rows)
        if (peer) {
          peerRows.push(...(result.peerRows ?? []))
          peerMethod.push(...result.method)
          method.push(...(result.ownMethod ?? []))
        } else method.push(...result.method)
      } catch (error) {
        const message = error instanceof Error ? (error.stack ?? error.message) : String(error)
        failures.push(`${scenario.name}: ${message}`)
        progress(`${scenario.name} FAILED: ${message}`)
      }
      progress(`  ${scenario.name} took ${(sinceNs(s0) / 1e9).toFixed(1)} s`)
    }
  } finally {
    await target.close()
  }

  const cpu = cpus()[0]?.model ?? 'unknown CPU'
  const facts: [string, string][] = [
    ['Date', started.toISOString()],
    ['Node', `${process.version} (${process.platform}/${process.arch}), V8 ${process.versions.v8}`],
    [
      'CPU',
      `${cpu}, ${availableParallelism()} cores available` +
        (target.spawned ? ' (shared with the redis-server)' : ''),
    ],
    [
      'Machine load',
      `1-minute load average ${loadAtStart.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end ` +
        `(${availableParallelism()} cores; above that, other processes compete for the CPU: wider round ranges)`,
    ],
    ['Redis', `${version}, ${target.source}`],
    [
      'Payload',
      `one JSON object, ${Buffer.byteLength(PAYLOAD_JSON)} bytes serialised (same object on both sides)`,
    ],
    ['Scale', `BENCH_SCALE=${scale}`],
    ['Run time', `${(sinceNs(t0) / 1e9).toFixed(1)} s`],
  ]
  if (failures.length > 0) facts.push(['FAILED scenarios', failures.map((f) => f.split('\n')[0]).join('; ')])

  const title = 'layercache benchmarks: ours vs raw lru-cache / ioredis'
  // latest.md is the budget report: only rewritten when a budget scenario ran (not by BENCH_ONLY=peers;
  // the budget row a peer scenario returns is then printed, not written).
  if (!ranOwn && rows.length > 0) {
    console.log(`\n${title}: rows of the peer scenarios (results/latest.md not rewritten)\n`)
    console.log(textTable(rows))
    console.log('')
    console.log(summaryLine(rows))
  }
  if (ranOwn) {
    console.log(`\n${title}`)
    for (const [k, v] of facts) console.log(`${k}: ${v}`)
    console.log('')
    console.log(textTable(rows))
    console.log('')
    console.log(summaryLine(rows))
    await writeReport(RESULTS, markdownReport({ title, facts, method }, rows))
    console.log(`Markdown report: ${RESULTS}`)
  }
  if (peerRows.length > 0) {
    const peerTitle = 'layercache vs peer libraries: bentocache, cache-manager, cacheable (and raw)'
    const peerFacts: [string, string][] = [...facts, ['Libraries', await peerVersions()]]
    console.log(`\n${peerTitle}\n`)
    console.log(peerTable(peerRows))
    console.log('')
    for (const line of peerSummary(peerRows)) console.log(line)
    const setups = LIBRARIES.map((l) => `Set-up, ${LIBRARY_LABEL[l]}: ${LIBRARY_SETUP[l]}.`)
    const header = { title: peerTitle, facts: peerFacts, method: [...setups, ...peerMethod] }
    await writeReport(PEER_RESULTS, peerMarkdown(header, peerRows))
    await writeReport(PEER_CHART, peerSvg(`${peerTitle}: ratio to the best peer, log scale`, peerRows))
    console.log(`Peer report: ${PEER_RESULTS}, chart: ${PEER_CHART}`)
  }
  if (failures.length > 0) console.log(`FAILED: ${failures.length} scenario(s) did not complete (see above)`)
  // A missed budget is a finding, not a failure; a scenario that could not run is.
  return failures.length > 0 ? 1 : 0
}

main().then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    console.error(error)
    process.exitCode = 1
  },
)
