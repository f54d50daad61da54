/**
 * Keeps counters read from getStats() monotonic: `resetStats()` sets a stack's counts back to zero, and a
 * Prometheus counter that falls reads as a process restart to `rate()`. When a count falls, what it had
 * reached at the previous scrape is carried over, so the exported counter keeps growing. (What it gained
 * between that scrape and the reset is not seen by anyone, and is lost.)
 */
export class MonotonicCounters {
  readonly #series = new Map<string, { last: number; carried: number }>()

  /** The value to export for the series `key`, whose source now reads `raw`. */
  value(key: string, raw: number): number {
    const seen = this.#series.get(key)
    if (seen === undefined) {
      this.#series.set(key, { last: raw, carried: 0 })
      return raw
    }
    if (raw < seen.last) seen.carried += seen.last
    seen.last = raw
    return seen.carried + raw
  }
}
