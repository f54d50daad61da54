import type { SingleFlightResult, SingleFlightWait } from '@layercache/core'

/** A key's lease and result keys, and the hash that names them (and its notifications). */
export interface FlightKeys {
  readonly hash: string
  readonly token: string
  readonly lease: string
  readonly result: string
}

/** What a look at Redis tells about a key's lease. */
export interface LeaseState {
  /** The lease key is gone (released, or expired with its holder). */
  readonly gone: boolean
  readonly result: SingleFlightResult | undefined
}

export interface WaitingRoomOptions {
  readonly waitTimeoutMs: number
  readonly pollMs: number
  readonly maxWaiters: number
  /** Reads the lease state (bounded by the command timeout; rejects on failure). */
  look(keys: FlightKeys): Promise<LeaseState>
  /** Resolves once notifications are heard (rejects if the subscription failed: polling remains). */
  listening(): Promise<void>
}

export interface WaitingRoomCounters {
  /** Looks at Redis that answered (one when a wait starts, then one per poll). */
  looks: number
  /** Waits ended by a notification. */
  notified: number
  /** Waits ended because polling found the lease gone. */
  polled: number
  timeouts: number
  /** Waits refused because maxWaiters were already waiting. */
  overflows: number
  /** Looks at Redis that failed (the waiters were told to retry). */
  lookErrors: number
}

interface Waiter {
  readonly resolve: (outcome: SingleFlightWait) => void
  readonly timer: NodeJS.Timeout
}

/** Everyone in this process waiting for one key: one poll and one look at a time, whatever their number. */
interface Waiting {
  readonly keys: FlightKeys
  readonly waiters: Set<Waiter>
  readonly poll: NodeJS.Timeout
  looking: boolean
  /** A notification came while a look was under way (it may have read the lease before the release). */
  notifiedMeanwhile: boolean
}

const RETRY: SingleFlightWait = { kind: 'retry' }
const RELEASED: SingleFlightWait = { kind: 'released' }
const TIMED_OUT: SingleFlightWait = { kind: 'retry', timedOut: true }

/**
 * The waiters of one coordinator, by key hash. A notification wakes a key's waiters; polling every
 * pollMs catches what notifications miss (a holder that died, a message lost while the subscriber
 * reconnected); waitTimeoutMs bounds every wait; at most maxWaiters wait at once.
 */
export class WaitingRoom {
  readonly counters: WaitingRoomCounters = {
    looks: 0,
    notified: 0,
    polled: 0,
    timeouts: 0,
    overflows: 0,
    lookErrors: 0,
  }
  private readonly waiting = new Map<string, Waiting>()
  private count = 0

  constructor(private readonly options: WaitingRoomOptions) {}

  get size(): number {
    return this.count
  }

  wait(keys: FlightKeys): Promise<SingleFlightWait> {
    if (this.count >= this.options.maxWaiters) {
      this.counters.overflows++
      return Promise.resolve(TIMED_OUT)
    }
    let entry = this.waiting.get(keys.hash)
    if (entry === undefined) {
      const created: Waiting = {
        keys,
        waiters: new Set(),
        poll: setInterval(() => this.look(created, false), this.options.pollMs),
        looking: false,
        notifiedMeanwhile: false,
      }
      created.poll.unref()
      this.waiting.set(keys.hash, created)
      entry = created
    }
    const waiting = entry
    return new Promise<SingleFlightWait>((resolve) => {
      const waiter: Waiter = {
        resolve,
        timer: setTimeout(() => this.timeOut(waiting, waiter), this.options.waitTimeoutMs),
      }
      waiter.timer.unref()
      waiting.waiters.add(waiter)
      this.count++
      // The holder may have released before this process listened: look once notifications are heard.
      this.options.listening().then(
        () => this.look(waiting, false),
        () => {}, // polling remains
      )
    })
  }

  /**
   * A release of the key named by `hash` was announced. Only a hint: anyone who can publish on the channel
   * can send one, so the waiters end their wait only once a look at Redis finds the lease gone (and reads
   * the result the holder may have left).
   */
  notified(hash: string): void {
    const entry = this.waiting.get(hash)
    if (entry !== undefined) this.look(entry, true)
  }

  /** Tells every waiter to retry (the coordinator is closing). */
  wakeAll(): void {
    for (const entry of [...this.waiting.values()]) this.settle(entry, RETRY, undefined)
  }

  private look(entry: Waiting, notified: boolean): void {
    if (this.waiting.get(entry.keys.hash) !== entry) return
    if (entry.looking) {
      if (notified) entry.notifiedMeanwhile = true
      return
    }
    entry.looking = true
    this.options.look(entry.keys).then(
      (state) => {
        entry.looking = false
        this.counters.looks++
        if (state.gone) {
          // Gone with a result: released. Gone without one: released after caching, or the holder died.
          const outcome =
            state.result !== undefined
              ? { kind: 'released' as const, result: state.result }
              : notified
                ? RELEASED
                : RETRY
          this.settle(entry, outcome, notified ? 'notified' : 'polled')
        } else if (entry.notifiedMeanwhile) {
          entry.notifiedMeanwhile = false
          this.look(entry, true)
        }
      },
      () => {
        entry.looking = false
        this.counters.lookErrors++
        // Cannot tell: the stack tries to take the lease again, and loads without one if Redis is down.
        this.settle(entry, RETRY, undefined)
      },
    )
  }

  private settle(entry: Waiting, outcome: SingleFlightWait, how: 'notified' | 'polled' | undefined): void {
    if (this.waiting.get(entry.keys.hash) !== entry) return
    this.waiting.delete(entry.keys.hash)
    clearInterval(entry.poll)
    for (const waiter of entry.waiters) {
      clearTimeout(waiter.timer)
      if (how !== undefined) this.counters[how]++
      waiter.resolve(outcome)
    }
    this.count -= entry.waiters.size
    entry.waiters.clear()
  }

  private timeOut(entry: Waiting, waiter: Waiter): void {
    if (!entry.waiters.delete(waiter)) return
    this.count--
    this.counters.timeouts++
    if (entry.waiters.size === 0 && this.waiting.get(entry.keys.hash) === entry) {
      this.waiting.delete(entry.keys.hash)
      clearInterval(entry.poll)
    }
    waiter.resolve(TIMED_OUT)
  }
}
