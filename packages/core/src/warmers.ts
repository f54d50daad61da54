/** What a warmer refills with: the view's own `refresh` (single-flighted with any load of the key). */
export type Refill = () => Promise<unknown>

interface Warmer {
  readonly refill: Refill
}

/**
 * Critical keys to refill right after they are invalidated (the homepage after a price change), so the
 * first reader finds them cached instead of waiting on the database. Keyed by the key within the stack
 * (namespace included, generation not: a bump refills every warmer in the new generation). Refills of one
 * burst of invalidations are coalesced into one per key and start on a later turn of the event loop, once
 * no invalidation of this stack is running (its fence would drop the refill's write-back); each goes
 * through `refresh`, so concurrent loads of the key share it.
 */
export class Warmers {
  private readonly warmers = new Map<string, Warmer>()
  private readonly due = new Set<string>()
  private scheduled = false
  /** Invalidations still running: refills wait for them, or those would fence the refill's write-back. */
  private running = 0
  /** Set by stop() (the stack is closing): nothing is refilled any more. */
  private stopped = false

  constructor(private readonly report: (key: string, outcome: Promise<unknown>) => void) {}

  get size(): number {
    return this.warmers.size
  }

  /** Registers (or replaces) the warmer of `scopedKey`; returns its removal. */
  add(scopedKey: string, refill: Refill): () => void {
    const warmer = { refill }
    this.warmers.set(scopedKey, warmer)
    return () => {
      if (this.warmers.get(scopedKey) === warmer) this.warmers.delete(scopedKey)
    }
  }

  /** Keys removed by an invalidation, as stored (`keyspace` is the generation prefix in front of them). */
  invalidated(fullKeys: Iterable<string>, keyspace: string): void {
    if (this.warmers.size === 0) return
    for (const full of fullKeys) {
      if (!full.startsWith(keyspace)) continue
      const scoped = full.slice(keyspace.length)
      if (this.warmers.has(scoped)) this.due.add(scoped)
    }
    this.schedule()
  }

  /** An invalidation started: hold refills until every running one ended. */
  begin(): void {
    this.running++
  }

  end(): void {
    this.running--
    this.schedule()
  }

  /** Everything was invalidated (a generation bump): every warmer is due. */
  invalidatedAll(): void {
    for (const key of this.warmers.keys()) this.due.add(key)
    this.schedule()
  }

  /** The stack is closing: forget what is due and refill nothing from now on. */
  stop(): void {
    this.stopped = true
    this.due.clear()
  }

  private schedule(): void {
    if (this.stopped || this.scheduled || this.due.size === 0 || this.running > 0) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      if (this.running > 0 || this.stopped) return // end() schedules again
      const keys = [...this.due]
      this.due.clear()
      for (const key of keys) {
        const warmer = this.warmers.get(key)
        if (warmer !== undefined) this.report(key, warmer.refill())
      }
    })
  }
}
