import { availableParallelism, cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import type { BenchContext } from './context'
import { nowNs, sinceNs } from './measure'
import { PAYLOAD_JSON } from './payload'
import { getRedisTarget, redisVersion } from './redis-target'
import { markdownReport, type Row, summaryLine, textTable, writeReport } from './report'
import { busPropagation } from './scenarios/bus-propagation'
import { entityInvalidation } from './scenarios/entity-invalidation'
import { expiryStorm } from './scenarios/expiry-storm'
import { fleetStampede } from './scenarios/fleet-stampede'
import { freshnessL1 } from './scenarios/freshness-l1'
import { l1Hit } from './scenarios/l1-hit'
import { l2Concurrent } from './scenarios/l2-concurrent'
import { l2Hit } from './scenarios/l2-hit'
import { prefixInvalidation } from './scenarios/prefix-invalidation'
import { tagInvalidation } from './scenarios/tag-invalidation'
import { writeBehind } from './scenarios/write-behind'
import { writes } from './scenarios/writes'

const RESULTS = fileURLToPath(new URL('../results/latest.md', import.meta.url))

const SCENARIOS = [
  { name: 'L1 hit', run: l1Hit },
  { name: 'L2 hit, 1 caller', run: l2Hit },
  { name: 'Writes, 1 caller', run: writes },
  { name: 'L2 hit, 100 concurrent', run: l2Concurrent },
  { name: 'Freshness options, L1 hit', run: freshnessL1 },
  { name: 'Hot-key expiry storm', run: expiryStorm },
  { name: 'Fleet stampede', run: fleetStampede },
  { name: 'Tag invalidation', run: tagInvalidation },
  { name: 'Prefix invalidation', run: prefixInvalidation },
  { name: 'Write-behind vs synchronous database writes', run: writeBehind },
  { name: 'Bus propagation and cost', run: busPropagation },
  { name: 'Entity invalidation', run: entityInvalidation },
] as const

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
  const t0 = nowNs()
  const target = await getRedisTarget()
  const rows: Row[] = []
  const method: string[] = []
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
    // BENCH_ONLY=tag runs only the scenarios whose name contains "tag" (case-insensitive).
    const only = process.env.BENCH_ONLY?.toLowerCase()
    for (const scenario of SCENARIOS) {
      if (only && !scenario.name.toLowerCase().includes(only)) continue
      progress(`running ${scenario.name} …`)
      const s0 = nowNs()
      try {
        const result = await scenario.run(ctx)
        rows.push(...result.rows)
        method.push(...result.method)
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
  console.log(`\n${title}`)
  for (const [k, v] of facts) console.log(`${k}: ${v}`)
  console.log('')
  console.log(textTable(rows))
  console.log('')
  console.log(summaryLine(rows))
  if (failures.length > 0) console.log(`FAILED: ${failures.length} scenario(s) did not complete (see above)`)
  await writeReport(RESULTS, markdownReport({ title, facts, method }, rows))
  console.log(`Markdown report: ${RESULTS}`)
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
