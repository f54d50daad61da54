import { l1Breakdown } from './breakdown/l1'
import { l2Breakdown } from './breakdown/l2'
import type { BenchContext } from './context'
import { getRedisTarget, redisVersion } from './redis-target'

/**
 * Not part of `pnpm bench`: splits the L1 and L2 hit paths into their parts to show where the time goes.
 * Run with `pnpm --filter @layercache/benchmarks breakdown`.
 */
async function main(): Promise<void> {
  const target = await getRedisTarget()
  try {
    const client = await target.connect()
    const pipelinedClient = await target.connect({ enableAutoPipelining: true })
    console.log(`Node ${process.version}, Redis ${await redisVersion(client)} (${target.source})`)
    const ctx: BenchContext = {
      client,
      pipelinedClient,
      url: target.url,
      prefix: target.prefix,
      redisSpawned: target.spawned,
      scale: 1,
    }
    const only = process.argv[2]
    if (only === undefined || only === 'l1') await l1Breakdown(ctx)
    if (only === undefined || only === 'l2') await l2Breakdown(ctx)
  } finally {
    await target.close()
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
