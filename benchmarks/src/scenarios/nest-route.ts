import { Agent, request } from 'node:http'
import { createRequire } from 'node:module'
import { forkWorker } from '@layercache/test-utils/worker-process'
import { type BenchContext, scaled } from '../context'
import { alternate, median, nowNs, pairedRatio, type Side, sinceNs } from '../measure'
import { PAYLOAD_JSON } from '../payload'
import { formatCount, formatNs, formatRate, type Row, type ScenarioResult } from '../report'
import type { NestPeerApi, NestPeerInit } from './nest-peer'

const PEER = new URL('./nest-peer.ts', import.meta.url)
/** Keep-alive connections the load generator keeps busy (each sends its next request on the last answer). */
const CONNECTIONS = 32
const KEYS = 100
const STAMPEDE = 1000
const LOAD_MS = 20

/** GET `path` on `agent`; resolves with the status and the body's length. */
function get(agent: Agent, url: URL, path: string): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, agent }, (res) => {
      let bytes = 0
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** `total` requests over CONNECTIONS connections, each sequential; ns per request (wall time / total). */
async function load(agent: Agent, url: URL, route: string, total: number): Promise<number> {
  let next = 0
  let wrong = 0
  const expected = Buffer.byteLength(PAYLOAD_JSON)
  const worker = async () => {
    while (next < total) {
      const id = next++ % KEYS
      const answer = await get(agent, url, `/${route}/${id}`)
      if (answer.status !== 200 || answer.bytes !== expected) wrong++
    }
  }
  const t0 = nowNs()
  await Promise.all(Array.from({ length: CONNECTIONS }, worker))
  const ns = sinceNs(t0) / total
  if (wrong > 0) throw new Error(`NestJS route: ${wrong} answers of /${route} were not the payload`)
  return ns
}

/**
 * NestJS route: a GET whose handler is @Cacheable (a memory hit once warm) against the same app answering
 * the same JSON from a constant, over HTTP keep-alive from the bench process to the app in its own
 * process; and 1000 concurrent cold requests of one key against a @Cacheable handler that takes 20 ms.
 */
export async function nestRoute(ctx: BenchContext): Promise<ScenarioResult> {
  const peer = await forkWorker<NestPeerApi, NestPeerInit>(PEER, {
    url: ctx.url,
    prefix: `${ctx.prefix}nest:`,
    loadMs: LOAD_MS,
  })
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS })
  try {
    const url = new URL(await peer.call('url'))
    const perRound = scaled(ctx, 3000)
    const rounds = Math.max(3, scaled(ctx, 20))
    const routes: Record<Side, string> = { ours: 'cached', baseline: 'static' }
    // Warm-up: connections, the JIT of both processes, every key of /cached loaded once.
    for (let i = 0; i < 3; i++)
      for (const side of ['ours', 'baseline'] as const) await load(agent, url, routes[side], perRound)
    const loadsAfterWarmUp = (await peer.call('calls')).cached
    const samples: Record<Side, number[]> = { ours: [], baseline: [] }
    // The app's CPU per request: what a saturated server's throughput follows, and steadier than wall time
    // on a busy machine (waiting for a core costs wall time, not CPU time).
    const cpu: Record<Side, number[]> = { ours: [], baseline: [] }
    await alternate(rounds, async (side) => {
      const cpu0 = await peer.call('cpuMicros')
      samples[side].push(await load(agent, url, routes[side], perRound))
      cpu[side].push(((await peer.call('cpuMicros')) - cpu0) / perRound)
    })
    const loadsTimed = (await peer.call('calls')).cached - loadsAfterWarmUp
    if (loadsTimed !== 0) throw new Error(`NestJS route: ${loadsTimed} handler calls while timing hits`)

    // Cold stampedes: each round a key nobody asked for, 1000 requests at once on fresh connections.
    const stampedeAgent = new Agent({ keepAlive: true, maxSockets: STAMPEDE })
    const stampedeRounds = Math.max(3, scaled(ctx, 5))
    const callsPerStampede: number[] = []
    const stampedeNs: number[] = []
    try {
      for (let round = 0; round < stampedeRounds; round++) {
        const before = (await peer.call('calls')).slow
        const t0 = nowNs()
        const answers = await Promise.all(
          Array.from({ length: STAMPEDE }, () => get(stampedeAgent, url, `/slow/cold-${round}`)),
        )
        stampedeNs.push(sinceNs(t0))
        if (answers.some((answer) => answer.status !== 200))
          throw new Error('NestJS stampede: a request failed')
        callsPerStampede.push((await peer.call('calls')).slow - before)
      }
    } finally {
      stampedeAgent.destroy()
    }

    const paired = pairedRatio(samples.ours, samples.baseline)
    const cpuPaired = pairedRatio(cpu.ours, cpu.baseline)
    const oursNs = median(samples.ours)
    const baseNs = median(samples.baseline)
    const scenario = 'NestJS route'
    const rows: Row[] = [
      {
        scenario,
        metric: `time/request, @Cacheable hit vs a constant, ${CONNECTIONS} keep-alive connections, median of ${rounds} rounds`,
        ours: `${formatNs(oursNs)} (${formatRate(1e9 / oursNs)})`,
        baseline: `${formatNs(baseNs)} (${formatRate(1e9 / baseNs)})`,
        ratio: paired.median,
        roundRange: paired.range,
        budget: { text: '≤ 1.2× time', maxRatio: 1.2 },
      },
      {
        scenario,
        metric: `app CPU per request (user + system), @Cacheable hit vs a constant, median of ${rounds} rounds`,
        ours: `${median(cpu.ours).toFixed(1)} µs`,
        baseline: `${median(cpu.baseline).toFixed(1)} µs`,
        ratio: cpuPaired.median,
        roundRange: cpuPaired.range,
      },
      {
        scenario,
        metric: `handler calls per stampede of ${STAMPEDE} concurrent cold requests (${LOAD_MS} ms handler), most of ${stampedeRounds} rounds`,
        ours: formatCount(Math.max(...callsPerStampede)),
        baseline: '1',
        ratio: Math.max(...callsPerStampede),
        budget: { text: 'exactly 1', maxRatio: 1, minRatio: 1 },
      },
      {
        scenario,
        metric: `time until all ${STAMPEDE} answered, median of ${stampedeRounds} stampedes`,
        ours: formatNs(median(stampedeNs)),
        baseline: '',
        ratio: Number.NaN,
      },
    ]
    return {
      rows,
      method: [
        `NestJS route: a NestJS ${nestVersion()} app (Express) in a forked process (tsx), ` +
          'LayercacheModule.forRoot on CacheStack([MemoryLayer, RedisLayer]); GET /cached/:id is a @Cacheable ' +
          `handler (key from the id, ${KEYS} ids cycled, all loaded during warm-up: checked 0 handler calls while ` +
          'timed), GET /static/:id returns the same object from a constant; both send the same JSON body. The ' +
          `bench process sends ${formatCount(perRound)} requests per round over ${CONNECTIONS} keep-alive ` +
          `connections (node:http Agent), each connection sequential; ${rounds} rounds per side, alternating, ` +
          'after 3 warm-up rounds per side; the ratio is the median of the paired per-round ratios. The app ' +
          "process's CPU time (process.cpuUsage) per request is also reported per round. The budget is " +
          "issue 19's for a cached response through each middleware (≤ 1.2× the framework serving a static " +
          'response of the same body), applied to the NestJS decorator.',
        `NestJS stampede: ${stampedeRounds} rounds, each ${STAMPEDE} concurrent GET /slow/<new key> on ` +
          `${STAMPEDE} connections; the handler is @Cacheable and takes ${LOAD_MS} ms. Budget (issue 19): ` +
          'exactly 1 handler call.',
      ],
    }
  } finally {
    agent.destroy()
    await peer.stop()
  }
}

function nestVersion(): string {
  return (createRequire(import.meta.url)('@nestjs/core/package.json') as { version: string }).version
}
