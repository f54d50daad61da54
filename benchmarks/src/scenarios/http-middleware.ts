import { forkWorker } from '@layercache/test-utils/worker-process'
import autocannon from 'autocannon'
import type { BenchContext } from '../context'
import { alternate, median, pairedRatio } from '../measure'
import { PAYLOAD_JSON } from '../payload'
import { formatNs, formatRate, type Row, type ScenarioResult } from '../report'
import type { Framework, HttpServerApi, HttpServerInit } from './http-server'

const SERVER = new URL('./http-server.ts', import.meta.url)
const FRAMEWORKS: readonly Framework[] = ['express', 'fastify', 'hono']
const LABEL: Record<Framework, string> = {
  express: 'Express',
  fastify: 'Fastify',
  hono: 'Hono (@hono/node-server)',
}
const CONNECTIONS = 50

/** One autocannon run against `url`: requests per second (mean over the run) and p50 latency in ms. */
async function load(url: string, seconds: number): Promise<{ rps: number; p50: number; errors: number }> {
  const result = await autocannon({ url, connections: CONNECTIONS, duration: seconds })
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    errors: result.errors + result.non2xx + result.timeouts,
  }
}

/**
 * A cached response through each framework's middleware against the same framework serving the same body
 * from a plain handler (DESIGN budget of issue 19: ≤ 1.2× its time per request). The app runs in a forked
 * process; autocannon (50 connections) loads `/static` and `/cached` in alternating rounds.
 */
export async function httpMiddleware(ctx: BenchContext): Promise<ScenarioResult> {
  const rounds = Math.max(3, Math.round(5 * ctx.scale))
  const seconds = Math.max(1, Math.round(3 * ctx.scale))
  const rows: Row[] = []
  for (const framework of FRAMEWORKS) {
    const init: HttpServerInit = { url: ctx.url, prefix: `${ctx.prefix}http:`, framework, body: PAYLOAD_JSON }
    const server = await forkWorker<HttpServerApi, HttpServerInit>(SERVER, init)
    try {
      const base = `http://127.0.0.1:${await server.call('port')}`
      const first = await fetch(`${base}/cached`)
      const second = await fetch(`${base}/cached`)
      if ((await second.text()) !== PAYLOAD_JSON || second.headers.get('x-cache') !== 'HIT') {
        throw new Error(
          `${framework}: /cached did not answer the body from the cache (${second.headers.get('x-cache')})`,
        )
      }
      await first.arrayBuffer()
      // Warm-up: JIT and connections, both routes.
      await load(`${base}/static`, 1)
      await load(`${base}/cached`, 1)
      const samples = {
        ours: [] as { rps: number; p50: number }[],
        baseline: [] as { rps: number; p50: number }[],
      }
      let errors = 0
      await alternate(rounds, async (side) => {
        const run = await load(`${base}/${side === 'ours' ? 'cached' : 'static'}`, seconds)
        errors += run.errors
        samples[side].push(run)
      })
      const calls = await server.call('handlerCalls')
      if (errors > 0 || calls !== 1) {
        throw new Error(
          `${framework}: ${errors} failed requests, the cached handler ran ${calls} times (expected 1)`,
        )
      }
      const nsPerRequest = (rps: number) => 1e9 / rps
      const time = pairedRatio(
        samples.ours.map((s) => nsPerRequest(s.rps)),
        samples.baseline.map((s) => nsPerRequest(s.rps)),
      )
      const scenario = `HTTP: cached response, ${LABEL[framework]}`
      rows.push({
        scenario,
        metric: `time per request at ${CONNECTIONS} connections (1 / req/s), middleware hit vs static handler, same body`,
        ours: `${formatNs(median(samples.ours.map((s) => nsPerRequest(s.rps))))} (${formatRate(median(samples.ours.map((s) => s.rps)))})`,
        baseline: `${formatNs(median(samples.baseline.map((s) => nsPerRequest(s.rps))))} (${formatRate(median(samples.baseline.map((s) => s.rps)))})`,
        ratio: time.median,
        roundRange: time.range,
        budget: { text: '≤ 1.2×', maxRatio: 1.2 },
      })
      const p50 = pairedRatio(
        samples.ours.map((s) => s.p50),
        samples.baseline.map((s) => s.p50),
      )
      rows.push({
        scenario,
        metric: 'p50 latency (info)',
        ours: `${median(samples.ours.map((s) => s.p50)).toFixed(2)} ms`,
        baseline: `${median(samples.baseline.map((s) => s.p50)).toFixed(2)} ms`,
        ratio: p50.median,
        roundRange: p50.range,
      })
    } finally {
      await server.stop()
    }
  }
  return {
    rows,
    method: [
      `HTTP middleware: per framework a forked app process (\`forkWorker\`, tsx) serves a ${Buffer.byteLength(PAYLOAD_JSON)}-byte ` +
        'JSON body at /static (a plain handler: Express `res.type().send()`, Fastify `reply.type().send()`, Hono ' +
        '`c.body()`) and at /cached (the same handler behind @layercache/express, the @layercache/fastify plugin or ' +
        '@layercache/hono, on CacheStack([MemoryLayer, RedisLayer]); warmed, checked HIT, handler called once in the whole run).',
      `HTTP middleware: autocannon from the benchmark process, ${CONNECTIONS} connections, ${rounds} rounds of ${seconds} s per ` +
        'side alternating A B / B A after a 1 s warm-up of each; time per request = 1 / mean req/s of a round; the ratio ' +
        'is the median of per-round ratios.',
    ],
  }
}
