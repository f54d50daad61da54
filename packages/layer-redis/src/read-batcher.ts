import type { CacheEntry } from '@layercache/core'
import calculateSlot from 'cluster-key-slot'
import type { DeadlineQueue, Pending } from './deadline-queue'
import { execChecked } from './pipeline-replies'
import type { RedisClient } from './redis-io'

/** What one caller gets: an entry, a miss, or (an inflating or re-read value) a promise of one. */
export type Answer = CacheEntry | undefined | Promise<CacheEntry | undefined>

/** What a ReadBatcher needs of its layer. `R` is the reply type: Buffer when `binary`, else string. */
export interface ReadBatcherHost<R> {
  readonly client: RedisClient
  readonly isCluster: boolean
  /** Reads with getBuffer / mgetBuffer. */
  readonly binary: boolean
  readonly deadlines: DeadlineQueue
  /** One caller's answer to a reply (null: no value). Called per caller, so callers never share objects. */
  decode(reply: R | null, full: string): Answer
  /** Why reads must not be sent now (the connection guard), or undefined. */
  refusal(): unknown
  /** The error a failed command gives each caller; `full` when it was a GET of that key alone. */
  failure(error: unknown, full: string | undefined): unknown
}

/** One caller; callers of the same key in a batch are chained through `next`. */
interface Waiter {
  readonly full: string
  readonly resolve: (answer: Answer) => void
  readonly reject: (error: unknown) => void
  next: Waiter | undefined
}

/**
 * Sends concurrent reads together. A read while no read command of this layer awaits its reply goes out
 * at once as a GET, so a lone caller waits for nothing. Otherwise it joins the batch being collected, sent from
 * setImmediate (after the I/O callbacks of this turn of the event loop, so callers started by different
 * requests still share it; process.nextTick would only gather one callback's reads): one command per
 * distinct key, shared by every caller of that key, and the distinct keys as one MGET (per slot on a
 * Cluster). A batch of one key is a plain GET.
 *
 * Only reads not yet sent are joined. Once a batch is sent, a new read starts a new batch, so a read that
 * begins after an invalidation resolved is always answered by a command sent after it (an earlier GET,
 * still in flight, may return the value the invalidation removed).
 */
export class ReadBatcher<R> {
  /** The batch being collected, by key (first caller of each key); undefined once sent. */
  private batch: Map<string, Waiter> | undefined
  /** Commands sent whose reply has not come back. */
  private inFlight = 0
  private resolveNext: ((answer: Answer) => void) | undefined
  private rejectNext: ((error: unknown) => void) | undefined
  // Created once, so a read allocates no executor closure of its own.
  private readonly capture = (resolve: (answer: Answer) => void, reject: (error: unknown) => void) => {
    this.resolveNext = resolve
    this.rejectNext = reject
  }

  constructor(private readonly host: ReadBatcherHost<R>) {}

  read(full: string): Promise<CacheEntry | undefined> {
    let batch = this.batch
    if (batch === undefined) {
      if (this.inFlight === 0) return this.readAlone(full)
      batch = new Map()
      this.batch = batch
      setImmediate(this.flush)
    }
    const answer = new Promise<CacheEntry | undefined>(this.capture)
    const waiter: Waiter = { full, resolve: this.resolveNext!, reject: this.rejectNext!, next: undefined }
    const first = batch.get(full)
    if (first === undefined) batch.set(full, waiter)
    else {
      waiter.next = first.next
      first.next = waiter
    }
    return answer
  }

  /** A GET sent at once, with no more bookkeeping than one command needs (the one-caller hot path). */
  private readAlone(full: string): Promise<CacheEntry | undefined> {
    const host = this.host
    const refused = host.refusal()
    if (refused !== undefined) return Promise.reject(refused)
    const answer = new Promise<CacheEntry | undefined>(this.capture)
    const resolve = this.resolveNext!
    const reject = this.rejectNext!
    const pending = host.deadlines.add('get', reject)
    this.get(full).then(
      (reply) => {
        if (!this.replied(pending)) return
        try {
          resolve(host.decode(reply, full))
        } catch (error) {
          reject(error)
        }
      },
      (error: unknown) => {
        if (this.replied(pending)) reject(host.failure(error, full))
      },
    )
    return answer
  }

  private readonly flush = (): void => {
    const batch = this.batch!
    this.batch = undefined
    const refused = this.host.refusal()
    if (refused !== undefined) {
      for (const first of batch.values()) rejectEach(first, () => refused)
      return
    }
    if (batch.size === 1) {
      this.sendOne(batch.values().next().value!)
      return
    }
    if (!this.host.isCluster) {
      this.sendMany([...batch.values()])
      return
    }
    // MGET keys must share a slot.
    const bySlot = new Map<number, Waiter[]>()
    for (const first of batch.values()) {
      const slot = calculateSlot(first.full)
      const group = bySlot.get(slot)
      if (group === undefined) bySlot.set(slot, [first])
      else group.push(first)
    }
    for (const group of bySlot.values()) {
      if (group.length === 1) this.sendOne(group[0]!)
      else this.sendMany(group)
    }
  }

  private sendOne(first: Waiter): void {
    const host = this.host
    const pending = host.deadlines.add('get', (error) => rejectEach(first, () => error))
    this.get(first.full).then(
      (reply) => {
        if (this.replied(pending)) this.answer(first, reply)
      },
      (error: unknown) => {
        if (this.replied(pending)) rejectEach(first, () => host.failure(error, first.full))
      },
    )
  }

  /**
   * MGET answers nil for a key holding another Redis type, where GET fails with WRONGTYPE (read as a
   * corrupt entry). An EXISTS of the same keys rides along: when more keys exist than values came back,
   * the keys answered nil are read again alone, so such an entry is still reported. The two go as a
   * pipeline of their own, written at once, not behind a client's auto-pipeline still in flight.
   */
  private sendMany(firsts: readonly Waiter[]): void {
    const host = this.host
    const fulls = firsts.map((first) => first.full)
    const pending = host.deadlines.add('get', (error) => {
      for (const first of firsts) rejectEach(first, () => error)
    })
    this.inFlight++
    const pipe = host.client.pipeline()
    if (host.binary) pipe.mgetBuffer(fulls)
    else pipe.mget(fulls)
    pipe.exists(fulls)
    execChecked(pipe).then(
      ([values, existing]) => {
        if (!this.replied(pending)) return
        const replies = values as (R | null)[]
        let found = 0
        for (const reply of replies) if (reply !== null) found++
        firsts.forEach((first, i) => {
          const reply = replies[i] ?? null
          if (reply === null && (existing as number) > found) this.sendOne(first)
          else this.answer(first, reply)
        })
      },
      (error: unknown) => {
        if (!this.replied(pending)) return
        for (const first of firsts) rejectEach(first, () => host.failure(error, undefined))
      },
    )
  }

  private get(full: string): Promise<R | null> {
    const client = this.host.client
    this.inFlight++
    return (this.host.binary ? client.getBuffer(full) : client.get(full)) as Promise<R | null>
  }

  /**
   * Books a command's reply; false when its deadline passed first (its callers were rejected then). A
   * command counts as in flight until Redis answers it, timed out or not: Redis is still busy with it.
   */
  private replied(pending: Pending): boolean {
    this.inFlight--
    if (pending.settled) return false
    pending.settled = true
    return true
  }

  private answer(first: Waiter, reply: R | null): void {
    for (let waiter: Waiter | undefined = first; waiter !== undefined; waiter = waiter.next) {
      try {
        waiter.resolve(this.host.decode(reply, waiter.full))
      } catch (error) {
        waiter.reject(error)
      }
    }
  }
}

function rejectEach(first: Waiter, errorFor: () => unknown): void {
  for (let waiter: Waiter | undefined = first; waiter !== undefined; waiter = waiter.next) {
    waiter.reject(errorFor())
  }
}
