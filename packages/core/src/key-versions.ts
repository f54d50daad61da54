import type { CacheLayer } from './layer'

/** Local version counters kept at most: beyond that the oldest name is forgotten (see `floor`). */
const MAX_LOCAL_NAMES = 100_000

/**
 * Version counters for the "put a version in the key, bump it instead of scanning" pattern. With a shared
 * layer the counters live there (Redis `INCR`, one per name, no expiry), so every instance agrees. Without
 * one they live in this process, bounded: a forgotten name restarts above every number ever forgotten, so
 * a version number is never handed out twice for a name.
 */
export class KeyVersions {
  private readonly local = new Map<string, number>()
  private floor = 0

  constructor(
    private readonly source: CacheLayer | undefined,
    private readonly maxLocalNames = MAX_LOCAL_NAMES,
  ) {}

  async current(name: string): Promise<number> {
    if (this.source !== undefined) return this.source.readCounter!(name)
    return this.local.get(name) ?? this.floor
  }

  async bump(name: string): Promise<number> {
    if (this.source !== undefined) return this.source.incrementCounter!(name)
    const next = (this.local.get(name) ?? this.floor) + 1
    this.local.delete(name)
    this.local.set(name, next)
    if (this.local.size > this.maxLocalNames) {
      const [oldest, value] = this.local.entries().next().value as [string, number]
      this.local.delete(oldest)
      this.floor = Math.max(this.floor, value)
    }
    return next
  }
}
