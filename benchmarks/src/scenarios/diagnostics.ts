import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { instrumentLayercache } from '@layercache/opentelemetry'
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics'
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base'
import { CacheStack, MemoryLayer, RedisLayer } from 'layercache'
import { type BenchContext, REDIS_TTL_MS, scaled } from '../context'
import { consume, median, nowNs, orderOf, pairedRatio, sinceNs } from '../measure'
import { makeKeys, PAYLOAD, type Product } from '../payload'
import { formatNs, type Row, type ScenarioResult } from '../report'

/** "Today's" core: the last commit before diagnostics_channel (override with BENCH_BASELINE_REV). */
const BASELINE_REV = process.env.BENCH_BASELINE_REV ?? '26e50fa'
const KEY_COUNT = 1000

type Stack = Pick<CacheStack, 'get' | 'set'>
type Mode = 'none' | 'metrics' | 'tracing'

/** Keeps metrics in the SDK without ever collecting during timing (what a 15 s scrape costs is not here). */
class IdleReader extends MetricReader {
  protected async onShutdown(): Promise<void> {}
  protected async onForceFlush(): Promise<void> {}
}

/** Accepts and drops spans: the SDK's span and batch work is measured, not an exporter's network. */
class DroppingExporter implements SpanExporter {
  export(_spans: ReadableSpan[], done: (result: { code: 0 }) => void): void {
    done({ code: 0 })
  }
  async shutdown(): Promise<void> {}
}

/** The CacheStack class of BASELINE_REV's core (its sources, loaded through tsx), or why not. */
async function baselineCacheStack(): Promise<typeof CacheStack | string> {
  const root = join(dirname(fileURLToPath(import.meta.url)), '../../..')
  try {
    const files = execFileSync('git', ['ls-tree', '-r', '--name-only', BASELINE_REV, 'packages/core/src'], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .split('\n')
      .filter((file) => file.endsWith('.ts'))
    if (files.length === 0) return `no packages/core/src at ${BASELINE_REV}`
    const dir = mkdtempSync(join(tmpdir(), 'layercache-baseline-core-'))
    for (const file of files) {
      const text = execFileSync('git', ['show', `${BASELINE_REV}:${file}`], { cwd: root, encoding: 'utf8' })
      const target = join(dir, file)
      mkdirSync(dirname(target), { recursive: true })
      writeFileSync(target, text)
    }
    const module = (await import(pathToFileURL(join(dir, 'packages/core/src/index.ts')).href)) as {
      CacheStack: typeof CacheStack
    }
    return module.CacheStack
  } catch (error) {
    return `git could not give ${BASELINE_REV} (${error instanceof Error ? error.message.split('\n')[0] : error})`
  }
}

/** Turns the exporters on for one side's round and off after it (the channels are process-wide). */
function switchFor(mode: Mode): () => () => void {
  if (mode === 'none') return () => () => {}
  return () => {
    const meterProvider = new MeterProvider({ readers: [new IdleReader()] })
    const tracerProvider = new BasicTracerProvider({
      spanProcessors: [new BatchSpanProcessor(new DroppingExporter())],
    })
    const telemetry =
      mode === 'metrics'
        ? instrumentLayercache({ meterProvider, traces: false })
        : instrumentLayercache({ tracerProvider, metrics: false })
    return () => {
      telemetry.stop()
      void meterProvider.shutdown()
      void tracerProvider.shutdown()
    }
  }
}

interface SideSpec {
  readonly name: string
  readonly stack: Stack
  readonly mode: Mode
}

/**
 * Sequential awaited ops per side, in rounds alternating A B C D / D C B A; the exporters are switched
 * on right before a side's timed round and off after it. `perOp`: time every op alone (Redis ops) and
 * take each round's p50, else one timed batch per round (memory hits, too short for a timer each).
 */
async function rounds(
  sides: readonly SideSpec[],
  run: (stack: Stack, key: string) => Promise<unknown>,
  plan: { warmup: number; rounds: number; ops: number; perOp: boolean },
  keys: readonly string[],
): Promise<Map<string, number[]>> {
  const perRound = new Map<string, number[]>(sides.map((side) => [side.name, []]))
  const cursor = new Map<string, number>(sides.map((side) => [side.name, 0]))
  // One loop per side, so no side's JIT feedback covers another's stack class.
  const loops = new Map(
    sides.map((side) => {
      const loop = new Function(
        'run',
        'stack',
        'keys',
        'now',
        'since',
        'consume',
        `return async (n, at, times) => {
          let j = at
          let sum = 0
          for (let i = 0; i < n; i++) {
            const t0 = times === undefined ? 0n : now()
            const value = await run(stack, keys[j])
            if (times !== undefined) times.push(since(t0))
            if (value !== undefined) sum += value.id
            if (++j === keys.length) j = 0
          }
          consume(sum)
          return j
        } // ${side.name}`,
      )(run, side.stack, keys, nowNs, sinceNs, consume) as (
        n: number,
        at: number,
        times: number[] | undefined,
      ) => Promise<number>
      return [side.name, loop] as const
    }),
  )
  const go = async (side: SideSpec, n: number, times?: number[]) => {
    cursor.set(side.name, await loops.get(side.name)!(n, cursor.get(side.name)!, times))
  }
  // Memory hits never leave the microtask queue: yield to the event loop between slices and rounds, so
  // timers and socket reads (the Redis layers' own background work) are not starved for seconds.
  const breathe = () => new Promise((resolve) => setImmediate(resolve))
  for (const side of sides) {
    const off = switchFor(side.mode)()
    const slice = Math.max(1, Math.min(plan.warmup, 10_000))
    for (let done = 0; done < plan.warmup; done += slice) {
      await go(side, slice)
      await breathe()
    }
    off()
  }
  for (let round = 0; round < plan.rounds; round++) {
    for (const side of orderOf(sides, round)) {
      const off = switchFor(side.mode)()
      if (plan.perOp) {
        const times: number[] = []
        await go(side, plan.ops, times)
        perRound.get(side.name)!.push(median(times))
      } else {
        const start = nowNs()
        await go(side, plan.ops)
        perRound.get(side.name)!.push(sinceNs(start) / plan.ops)
      }
      off()
      await breathe()
    }
  }
  return perRound
}

function row(
  scenario: string,
  metric: string,
  results: Map<string, number[]>,
  ours: string,
  baseline: string,
  budget: { text: string; maxRatio: number } | undefined,
): Row {
  const a = results.get(ours)!
  const b = results.get(baseline)!
  const paired = pairedRatio(a, b)
  return {
    scenario,
    metric,
    ours: `${ours}: ${formatNs(median(a))}`,
    baseline: `${baseline}: ${formatNs(median(b))}`,
    ratio: paired.median,
    roundRange: paired.range,
    budget,
  }
}

/**
 * Issue 18's budgets: what diagnostics_channel costs a call with nobody subscribed (against the core of
 * BASELINE_REV, before the channels existed), with @layercache/opentelemetry's metrics on, and with its
 * tracing on. Memory hits on CacheStack([MemoryLayer, RedisLayer]); Redis hits and sets on
 * CacheStack([RedisLayer]), every side its own stack over the same client and keys.
 */
export async function diagnostics(ctx: BenchContext): Promise<ScenarioResult> {
  const Before = await baselineCacheStack()
  const keys = makeKeys(KEY_COUNT)
  const prefix = `${ctx.prefix}diag:`
  const memoryStack = (Class: typeof CacheStack) =>
    new Class([
      new MemoryLayer({ ttl: 60_000, maxSize: 10_000 }),
      new RedisLayer({ client: ctx.client, ttl: REDIS_TTL_MS, prefix }),
    ])
  const redisStack = (Class: typeof CacheStack) =>
    new Class([new RedisLayer({ client: ctx.client, ttl: REDIS_TTL_MS, prefix })])
  await redisStack(CacheStack).mset(keys.map((key) => ({ key, value: PAYLOAD })))

  const before = (make: (Class: typeof CacheStack) => Stack): SideSpec[] =>
    typeof Before === 'string' ? [] : [{ name: 'before', stack: make(Before), mode: 'none' }]
  const exporters = (make: (Class: typeof CacheStack) => Stack): SideSpec[] => [
    { name: 'metrics', stack: make(CacheStack), mode: 'metrics' },
    { name: 'tracing', stack: make(CacheStack), mode: 'tracing' },
  ]
  const memoryNone: SideSpec = { name: 'none', stack: memoryStack(CacheStack), mode: 'none' }
  const redisNone: SideSpec = { name: 'none', stack: redisStack(CacheStack), mode: 'none' }
  const memoryBefore = before(memoryStack)
  const memoryExporters = exporters(memoryStack)
  for (const side of [memoryNone, ...memoryBefore, ...memoryExporters]) {
    for (const key of keys) await side.stack.get(key) // into memory
  }
  const redisBefore = before(redisStack)
  const redisExporters = exporters(redisStack)

  const memoryPlan = {
    warmup: scaled(ctx, 200_000),
    rounds: Math.max(3, scaled(ctx, 20)),
    ops: scaled(ctx, 60_000),
    perOp: false,
  }
  const redisPlan = {
    warmup: scaled(ctx, 2_000),
    rounds: Math.max(3, scaled(ctx, 20)),
    ops: scaled(ctx, 500),
    perOp: true,
  }
  const get = (stack: Stack, key: string) => stack.get<Product>(key)
  const set = async (stack: Stack, key: string) => {
    await stack.set(key, PAYLOAD)
    return undefined
  }
  // "No subscriber vs before" first, before anything in the process ever subscribed: switching
  // subscribers on and off between rounds changes the channels' prototypes, which deoptimises the code
  // that reads them, a cost no service pays (it subscribes once).
  const memoryVsBefore = await rounds([memoryNone, ...memoryBefore], get, memoryPlan, keys)
  const redisVsBefore = await rounds([redisNone, ...redisBefore], get, redisPlan, keys)
  const memory = await rounds([memoryNone, ...memoryExporters], get, memoryPlan, keys)
  const redis = await rounds([redisNone, ...redisExporters], get, redisPlan, keys)
  const writes = await rounds(
    [redisNone, redisExporters.find((side) => side.mode === 'tracing')!],
    set,
    redisPlan,
    keys,
  )

  const rows: Row[] = []
  const l1 = 'Diagnostics: memory hit'
  const l2 = 'Diagnostics: Redis hit'
  const budget = (maxRatio: number, text: string) => ({ maxRatio, text })
  if (typeof Before !== 'string') {
    rows.push(
      row(
        l1,
        'time/op, no subscriber vs before',
        memoryVsBefore,
        'none',
        'before',
        budget(1.03, '≤ 1.03× (±3%)'),
      ),
      row(l2, 'p50, no subscriber vs before', redisVsBefore, 'none', 'before', budget(1.03, '≤ 1.03× (±3%)')),
    )
  }
  rows.push(
    row(l1, 'time/op, metrics on vs off', memory, 'metrics', 'none', budget(1.15, '≤ 1.15×')),
    row(l1, 'time/op, tracing on vs off', memory, 'tracing', 'none', undefined),
    row(l2, 'p50, metrics on vs off', redis, 'metrics', 'none', budget(1.05, '≤ 1.05×')),
    row(l2, 'p50, tracing on vs off', redis, 'tracing', 'none', budget(1.2, '≤ 1.2×')),
    row(
      'Diagnostics: set (Redis)',
      'p50, tracing on vs off',
      writes,
      'tracing',
      'none',
      budget(1.2, '≤ 1.2×'),
    ),
  )
  return {
    rows,
    method: [
      `Diagnostics: every side its own stack over the same plain client and ${KEY_COUNT} keys; memory hits on ` +
        'CacheStack([MemoryLayer, RedisLayer]) (all keys in memory), Redis hits and sets on ' +
        'CacheStack([RedisLayer]). "before" = the CacheStack of core at ' +
        `${BASELINE_REV} (the last commit without diagnostics_channel; its sources taken from git and loaded ` +
        'through tsx, with today’s layers)' +
        (typeof Before === 'string' ? ` — not measured this run: ${Before}` : '') +
        '; "none" = today’s code, nobody subscribed; "metrics" = @layercache/opentelemetry with metrics only ' +
        '(an SDK MeterProvider whose reader never collects during timing); "tracing" = traces only (SDK ' +
        'BasicTracerProvider, BatchSpanProcessor, an exporter that drops the spans).',
      'Diagnostics: "none vs before" is measured first (none and before alternating), before anything in the ' +
        'process subscribed; then none, metrics and tracing alternate. The channels are process-wide, so each ' +
        'exporter is switched on right before its side’s timed round and off after it (A B C / C B A). ' +
        `Memory: ${memoryPlan.rounds} rounds ` +
        `× one timed batch of ${memoryPlan.ops} awaited gets per side (time/op). Redis: ${redisPlan.rounds} rounds × ` +
        `${redisPlan.ops} sequential ops per side, each timed alone, p50 per round. Ratio = median of the ` +
        'per-round ratios.',
    ],
  }
}
