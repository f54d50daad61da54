import type { SingleFlightLease, SingleFlightResult } from '@layercache/core'

/** What a lease needs from its coordinator. */
export interface LeaseOwner {
  readonly leaseMs: number
  /** Extends the lease when `value` still holds it; resolves false when another value (or none) does. */
  renew(lease: RedisLease): Promise<boolean>
  /** Compare-and-delete, storing `result` for waiters and waking them; resolves whether it was held. */
  release(lease: RedisLease, result: SingleFlightResult | undefined): Promise<boolean>
  /** The lease was found lost (counted once per lease). */
  lost(lease: RedisLease): void
  /** The lease no longer needs renewing. */
  forget(lease: RedisLease): void
}

/**
 * One held lease: renewed every leaseMs / 3 while the load runs. It counts as held only while Redis is
 * known to keep it: until a renewal finds another value, and no longer than a lease period after the
 * last renewal Redis confirmed (measured from when that renewal was sent, on this host's monotonic clock).
 */
export class RedisLease implements SingleFlightLease {
  private readonly timer: NodeJS.Timeout
  private heldUntil: number
  private renewing = false
  private lostFound = false
  private released = false
  private renewals = true

  constructor(
    private readonly owner: LeaseOwner,
    readonly token: number,
    /** The lease key's hash (see keysOf), for the coordinator. */
    readonly hash: string,
    /** What the lease key holds: the token and this acquisition's nonce. */
    readonly value: string,
    acquiredAt: number,
  ) {
    this.heldUntil = acquiredAt + owner.leaseMs
    this.timer = setInterval(() => this.renew(), Math.max(1, Math.floor(owner.leaseMs / 3)))
    this.timer.unref()
  }

  get held(): boolean {
    return !this.lostFound && !this.released && performance.now() < this.heldUntil
  }

  async release(result?: SingleFlightResult): Promise<boolean> {
    if (this.released) return false
    // A lease this holder already stopped trusting (a renewal found another value, or none got through for
    // a lease period) answers false even if Redis still had it when released: its load went on as if it
    // were lost (no write-back) and is counted as such, whatever the delete finds.
    const trusted = this.held
    this.released = true
    this.stopRenewing()
    const held = await this.owner.release(this, result)
    if (!held) this.markLost()
    return held && trusted
  }

  /** No more renewals (released, lost, or the coordinator closing: the lease then expires in Redis). */
  stopRenewing(): void {
    if (!this.renewals) return
    this.renewals = false
    clearInterval(this.timer)
    this.owner.forget(this)
  }

  private renew(): void {
    if (this.renewing || !this.renewals) return
    this.renewing = true
    const sentAt = performance.now()
    this.owner.renew(this).then(
      (held) => {
        this.renewing = false
        if (held) this.heldUntil = sentAt + this.owner.leaseMs
        else this.lose()
      },
      () => {
        this.renewing = false
        // Redis may still keep it; only past the lease period can it have expired there.
        if (performance.now() >= this.heldUntil) this.lose()
      },
    )
  }

  private lose(): void {
    if (this.released) return
    this.markLost()
    this.stopRenewing()
  }

  private markLost(): void {
    if (this.lostFound) return
    this.lostFound = true
    this.owner.lost(this)
  }
}
