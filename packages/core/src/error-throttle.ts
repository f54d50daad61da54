/**
 * Remembers, per key, until when a failing loader must not be called again while a stale value stands in
 * for it, so a database that is down is not hit on every request. Bounded: the oldest records go first.
 */
export class ErrorThrottle {
  private readonly retryAt = new Map<string, number>()

  constructor(private readonly maxKeys = 10_000) {}

  blocked(key: string): boolean {
    const until = this.retryAt.get(key)
    if (until === undefined) return false
    if (until > Date.now()) return true
    this.retryAt.delete(key)
    return false
  }

  failed(key: string, retryAfterMs: number): void {
    this.retryAt.delete(key)
    if (this.retryAt.size >= this.maxKeys) {
      const oldest = this.retryAt.keys().next()
      if (!oldest.done) this.retryAt.delete(oldest.value)
    }
    this.retryAt.set(key, Date.now() + retryAfterMs)
  }

  forget(key: string): void {
    if (this.retryAt.size > 0) this.retryAt.delete(key)
  }

  get size(): number {
    return this.retryAt.size
  }
}
