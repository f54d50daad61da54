/**
 * The key index's steady state under a sustained stream of new, expiring keys (issue 15, item 10).
 *
 *   pnpm --filter @layercache/benchmarks index-gc
 *   INDEX_GC_RATE=20000 INDEX_GC_SECONDS=300 INDEX_GC_TTL_MS=2000 pnpm --filter @layercache/benchmarks index-gc
 *
 * One RedisLayer writes RATE new keys a second (mset batches every 100 ms, TTL TTL_MS) for SECONDS,
 * while the layer's own background collection runs. Every 10 s it prints the index entries (ZCARD over
 * every shard), Redis `used_memory` and the write rate reached. The baseline beside it is the floor any
 * collector can reach: entries live their TTL plus the 60 s grace (clock skew between writers), so
 * `rate reached × (TTL + 60 s)`. Steady state means the ratio stays flat once that time has passed; a
 * collector that falls behind shows a ratio that keeps climbing.
 */
import { CacheStack, RedisLayer } from 'layercache'
import { getRedisTarget } from './redis-target'

const RATE = Number(process.env.INDEX_GC_RATE ?? 20_000)
const SECONDS = Number(process.env.INDEX_GC_SECONDS ?? 300)
const TTL_MS = Number(process.env.INDEX_GC_TTL_MS ?? 2000)
const GRACE_MS = 60_000
const TICK_MS = 100
const SAMPLE_MS = 10_000
const SHARDS = 16

const target = await getRedisTarget()
try {
  const client = await target.connect()
  const prefix = `${target.prefix}gc:`
  const cache = new CacheStack([new RedisLayer({ client, prefix, ttl: TTL_MS })])
  const shardKeys = Array.from({ length: SHARDS }, (_, s) => `${prefix}~{${prefix}:${s}}k`)
  const indexSize = async () =>
    (await Promise.all(shardKeys.map((key) => client.zcard(key)))).reduce((a, b) => a + b, 0)
  const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await client.info('memory'))?.[1])

  console.log(
    `# Key index steady state: ${RATE} new keys/s, TTL ${TTL_MS} ms, ${SECONDS} s (${target.source})`,
  )
  console.log('')
  console.log(
    '| elapsed | index entries | floor (rate × (TTL + grace)) | entries / floor | used_memory | rate reached |',
  )
  console.log('| --- | --- | --- | --- | --- | --- |')

  const started = performance.now()
  let written = 0
  let next = 0
  let nextSample = SAMPLE_MS
  const ratios: number[] = []
  const perTick = Math.round((RATE * TICK_MS) / 1000)
  while (performance.now() - started < SECONDS * 1000) {
    const tickStart = performance.now()
    const batch = Array.from({ length: perTick }, () => ({ key: `k:${next++}`, value: 1 }))
    await cache.mset(batch)
    written += batch.length
    const elapsed = performance.now() - started
    if (elapsed >= nextSample) {
      nextSample += SAMPLE_MS
      const reached = written / (elapsed / 1000)
      const entries = await indexSize()
      const floor = Math.min(written, reached * ((TTL_MS + GRACE_MS) / 1000))
      const ratio = entries / floor
      if (elapsed > TTL_MS + GRACE_MS + SAMPLE_MS) ratios.push(ratio)
      const mb = ((await usedMemory()) / 1024 / 1024).toFixed(0)
      console.log(
        `| ${(elapsed / 1000).toFixed(0)} s | ${entries} | ${floor.toFixed(0)} | ${ratio.toFixed(2)} | ${mb} MB | ${reached.toFixed(0)}/s |`,
      )
    }
    const spent = performance.now() - tickStart
    if (spent < TICK_MS) await new Promise((resolve) => setTimeout(resolve, TICK_MS - spent))
  }
  console.log('')
  if (ratios.length >= 2) {
    console.log(
      `After the first TTL + grace: entries / floor from ${ratios[0]!.toFixed(2)} to ${ratios.at(-1)!.toFixed(2)} ` +
        `(max ${Math.max(...ratios).toFixed(2)}): flat means collection keeps up.`,
    )
  } else {
    console.log('Run longer than TTL + 60 s grace + 10 s to see the steady state.')
  }
} finally {
  await target.close()
}
