/**
 * Remembers which keys were invalidated (deleted or overwritten) while reads and loads are in flight,
 * so a value fetched before an invalidation is never written back after it (no resurrection).
 *
 * Every read-through/load takes a ticket (`begin`), which is the current epoch. An invalidation bumps
 * the epoch and records it for the key. A write-back is fenced when the key's record is newer than the
 * ticket. Records are only kept while something is in flight, and the map is bounded: on overflow it is
 * dropped and `floor` makes every ticket older than the overflow count as fenced, which can only skip a
 * harmless write-back, never allow a stale one.
 */
export class InvalidationFence {
  private epoch = 0
  private floor = 0
  private overflowFloor = 0
  private inFlight = 0
  private readonly invalidatedAt = new Map<string, number>()
  /** Keys a new value (set, mset) was written to while something was in flight: older reads must not overwrite it. */
  private readonly overwrittenAt = new Map<string, number>()

  constructor(private readonly maxTrackedKeys = 100_000) {}

  begin(): number {
    this.inFlight++
    return this.epoch
  }

  end(): void {
    this.inFlight--
    // clear() on an empty Map still reallocates its table: skip it on the common path.
    if (this.inFlight === 0) {
      if (this.invalidatedAt.size > 0) this.invalidatedAt.clear()
      if (this.overwrittenAt.size > 0) this.overwrittenAt.clear()
    }
  }

  invalidate(key: string): void {
    this.epoch++
    if (this.inFlight === 0) return
    if (this.invalidatedAt.size >= this.maxTrackedKeys) {
      this.invalidatedAt.clear()
      this.floor = this.epoch
      this.overflowFloor = this.epoch
      return
    }
    this.invalidatedAt.set(key, this.epoch)
  }

  /**
   * A new value of `key` was just written: a read or load with an earlier ticket carries an older one and
   * must not write it over (a `set` is not fenced by this, only by an invalidation of its key).
   */
  overwritten(key: string): void {
    this.epoch++
    if (this.inFlight === 0) return
    if (this.overwrittenAt.size >= this.maxTrackedKeys) {
      this.overwrittenAt.clear()
      this.floor = this.epoch
      return
    }
    this.overwrittenAt.set(key, this.epoch)
  }

  /** Whether a new value of `key` was written (`overwritten`) after `ticket` was issued. */
  isOverwrittenSince(key: string, ticket: number): boolean {
    const written = this.overwrittenAt.get(key)
    return written !== undefined && written > ticket
  }

  /** Fences every ticket issued so far (used by broad invalidations such as clear). */
  invalidateAll(): void {
    this.epoch++
    this.floor = this.epoch
    this.invalidatedAt.clear()
    this.overwrittenAt.clear()
  }

  /**
   * Fenced by an invalidation of this very key only (or by losing track on overflow), not by group
   * invalidations: what a new value being written needs, since a group invalidation that does not cover
   * its key must not make one layer drop it while another keeps it.
   */
  isKeyFenced(key: string, ticket: number): boolean {
    if (ticket < this.overflowFloor) return true
    const at = this.invalidatedAt.get(key)
    return at !== undefined && at > ticket
  }

  isFenced(key: string, ticket: number): boolean {
    if (ticket < this.floor) return true
    const at = this.invalidatedAt.get(key)
    if (at !== undefined && at > ticket) return true
    if (this.overwrittenAt.size === 0) return false
    const written = this.overwrittenAt.get(key)
    return written !== undefined && written > ticket
  }

  get trackedKeys(): number {
    return this.invalidatedAt.size
  }
}
