/**
 * Refuses a message whose timestamp is outside the replay window and a nonce seen within it. Nonces are
 * kept only for the window (and at most `maxNonces`; past that the oldest go first, and messages older
 * than the oldest kept nonce are refused, so a dropped nonce cannot be replayed either).
 */
export class ReplayGuard {
  private readonly seen = new Map<string, number>()
  private floor = 0

  constructor(
    private readonly windowMs: number,
    private readonly maxNonces = 100_000,
  ) {}

  check(sentAt: number, nonce: string, now: number): 'ok' | 'stale' | 'replay' {
    if (Math.abs(now - sentAt) > this.windowMs || sentAt < this.floor) return 'stale'
    if (this.seen.has(nonce)) return 'replay'
    this.prune(now)
    if (this.seen.size >= this.maxNonces) {
      const [oldest, at] = this.seen.entries().next().value as [string, number]
      this.seen.delete(oldest)
      this.floor = Math.max(this.floor, at)
    }
    this.seen.set(nonce, sentAt)
    return 'ok'
  }

  get size(): number {
    return this.seen.size
  }

  /** Insertion order is roughly timestamp order: drop from the front while outside the window. */
  private prune(now: number): void {
    for (const [nonce, at] of this.seen) {
      if (now - at <= this.windowMs) break
      this.seen.delete(nonce)
    }
  }
}
