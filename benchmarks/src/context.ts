import type { Redis } from 'ioredis'

/** What every scenario gets from main. */
export interface BenchContext {
  /** A plain ioredis client (no auto-pipelining), shared by both sides of a comparison. */
  readonly client: Redis
  /** An ioredis client with `enableAutoPipelining: true`, shared by both sides of a comparison. */
  readonly pipelinedClient: Redis
  /** The Redis URL, for scenarios that start their own connections or processes. */
  readonly url: string
  /** Run-unique key prefix; scenarios add their own part after it. */
  readonly prefix: string
  /** True when the Redis is a throwaway server this run started (scenarios may reconfigure it). */
  readonly redisSpawned: boolean
  /** Multiplies iteration counts (BENCH_SCALE, default 1) for quicker or steadier runs. */
  readonly scale: number
}

/** Entry lifetime used in Redis by every scenario: long enough that nothing expires during a run. */
export const REDIS_TTL_MS = 600_000

export function scaled(ctx: BenchContext, n: number): number {
  return Math.max(1, Math.round(n * ctx.scale))
}
