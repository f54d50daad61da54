import { coarseNow, LayerTimeoutError } from '@layercache/core'
import type { CallDeadline } from './redis-io'

export interface Pending extends CallDeadline {
  readonly deadline: number
  readonly operation: string
  settled: boolean
  /** Rejected by its timeout (then `settled` too). */
  expired: boolean
  reject: ((error: unknown) => void) | undefined
}

/**
 * Command timeouts without a timer per command. Every command of a layer has the same timeout, so
 * deadlines arrive in FIFO order: one unref'd timer watches the oldest unsettled command. Creating and
 * clearing a Node timer per command costs more than the rest of the timeout bookkeeping together.
 */
export class DeadlineQueue {
  private readonly queue: Pending[] = []
  private head = 0
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly layer: string,
    private readonly timeoutMs: number,
  ) {}

  /** Registers a command; its caller marks the returned ticket `settled` when the command answers. */
  add(operation: string, reject: (error: unknown) => void): Pending {
    this.dropSettledHead()
    // A millisecond of slack on a timeout costs nothing; a precise clock read per command does.
    const pending: Pending = {
      deadline: coarseNow() + this.timeoutMs,
      operation,
      settled: false,
      expired: false,
      reject,
    }
    this.queue.push(pending)
    if (this.timer === undefined) this.arm(this.timeoutMs)
    return pending
  }

  get size(): number {
    return this.queue.length - this.head
  }

  private dropSettledHead(): void {
    const queue = this.queue
    while (this.head < queue.length && queue[this.head]!.settled) this.head++
    if (this.head === queue.length) {
      queue.length = 0
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > queue.length) {
      queue.splice(0, this.head)
      this.head = 0
    }
  }

  private arm(delayMs: number): void {
    this.timer = setTimeout(() => this.expire(), Math.max(1, Math.ceil(delayMs)))
    this.timer.unref()
  }

  private expire(): void {
    this.timer = undefined
    const now = Date.now()
    const queue = this.queue
    while (this.head < queue.length) {
      const pending = queue[this.head]!
      if (!pending.settled) {
        if (pending.deadline > now) break
        pending.settled = true
        pending.expired = true
        pending.reject?.(new LayerTimeoutError(this.layer, pending.operation, this.timeoutMs))
      }
      pending.reject = undefined
      this.head++
    }
    this.dropSettledHead()
    if (this.head < queue.length) this.arm(queue[this.head]!.deadline - now)
  }
}
