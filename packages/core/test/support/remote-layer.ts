/**
 * Test support for the core suite: a "remote" CacheLayer double on a Map, plus small helpers.
 *
 * RemoteLayer implements the CacheLayer *contract* (async, `local: false`); it is not a Redis mock. It models
 * one pipelined connection to a server:
 * - every call is executed by the "server" in the order it was issued (FIFO), optionally after a number of
 *   microtask turns (`latency`), and its answer reaches the caller after more turns (`responseLatency`);
 * - `holdRequests(op)` keeps calls of `op` on the client side (not yet issued: think encoding or compression),
 *   so later calls of other kinds overtake them; writes check `stillValid` only when they are issued;
 * - `holdResponses(op)` lets calls of `op` execute but keeps their answers in flight (a read that already saw
 *   the old value);
 * - `fail(ops)` makes calls reject with LayerUnavailableError (or any error) until `recover()`.
 * Values are stored as structured clones (like a serialising layer) unless `serialize: false`.
 * Nothing here uses timers, so tests that use it are deterministic.
 */
import {
  type CacheEntry,
  type CacheLayer,
  type CommitWrite,
  effectiveTtl,
  LayerUnavailableError,
  type LayerWrite,
  SerializationError,
} from '@layercache/core'

// The core package cannot list @layercache/layer-memory as a dependency (dependencies point one way), so the
// core tests reach MemoryLayer through its source. It imports '@layercache/core' itself, which resolves to the
// same module as the tests' import, so `instanceof` checks on errors work across both.
export { MemoryLayer } from '../../../layer-memory/src/index'

export type RemoteOp = 'get' | 'getMany' | 'write' | 'delete' | 'deleteMany' | 'has' | 'clear'
export const REMOTE_OPS: readonly RemoteOp[] = [
  'get',
  'getMany',
  'write',
  'delete',
  'deleteMany',
  'has',
  'clear',
]

export interface Deferred<T> {
  readonly promise: Promise<T>
  resolve(value: T): void
  reject(error: unknown): void
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void
  let reject!: (error: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** Lets `n` microtask turns pass (no timers involved). */
export async function ticks(n = 1): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve()
}

/** Lets every pending promise chain settle as far as it can without timers or new I/O. */
export async function flush(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve))
}

/** A small seeded PRNG (mulberry32) so "random" interleavings are reproducible. */
export function seededRandom(seed: number): { next(): number; int(min: number, max: number): number } {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return { next, int: (min, max) => min + Math.floor(next() * (max - min + 1)) }
}

/** Calls of one operation parked until `release()`. */
export class Hold {
  private readonly gate = deferred<void>()
  private readonly firstArrival = deferred<void>()
  private readonly arrivalWaiters: { count: number; done: () => void }[] = []
  /** How many calls are parked right now. */
  waiting = 0
  /** How many calls have arrived at this hold in total. */
  arrived = 0
  released = false

  constructor(
    private readonly onRelease: () => void,
    private readonly limit = Number.POSITIVE_INFINITY,
  ) {}

  /** Resolves once at least `count` calls have arrived at the hold. */
  reached(count = 1): Promise<void> {
    if (count === 1) return this.firstArrival.promise
    if (this.arrived >= count) return Promise.resolve()
    return new Promise((done) => this.arrivalWaiters.push({ count, done }))
  }

  release(): void {
    if (this.released) return
    this.released = true
    this.onRelease()
    this.gate.resolve()
  }

  /** @internal */
  async pass(): Promise<void> {
    if (this.released || this.arrived >= this.limit) return
    this.waiting++
    this.arrived++
    this.firstArrival.resolve()
    for (const waiter of this.arrivalWaiters.filter((w) => this.arrived >= w.count)) waiter.done()
    await this.gate.promise
    this.waiting--
  }
}

interface StoredEntry {
  readonly payload: unknown
  readonly expiresAt: number
  readonly tags: readonly string[] | undefined
}

export interface RemoteLayerOptions {
  readonly name?: string
  readonly ttl?: number
  /** Store structured clones and refuse values that cannot be cloned (default true). */
  readonly serialize?: boolean
}

export class RemoteLayer implements CacheLayer {
  readonly name: string
  readonly local = false as const
  readonly ttl: number | undefined
  private readonly serialize: boolean
  private readonly store = new Map<string, StoredEntry>()
  private readonly requestHolds = new Map<RemoteOp, Hold>()
  private readonly responseHolds = new Map<RemoteOp, Hold>()
  private failures = new Map<RemoteOp, () => unknown>()
  private tail: Promise<unknown> = Promise.resolve()
  /** Microtask turns before the server executes a call (per call; FIFO order is kept regardless). */
  latency: (op: RemoteOp) => number = () => 0
  /** Microtask turns between execution and the caller seeing the answer. */
  responseLatency: (op: RemoteOp) => number = () => 0
  /** Calls made per operation (including failed ones). */
  readonly calls: Record<RemoteOp, number> = {
    get: 0,
    getMany: 0,
    write: 0,
    delete: 0,
    deleteMany: 0,
    has: 0,
    clear: 0,
  }
  /** Every call in issue order with the keys it carried (writes list their keys). */
  readonly log: { op: RemoteOp; keys: readonly string[] }[] = []
  /** Entries actually written (after `stillValid`). */
  writesApplied = 0
  /** Entries whose write was dropped because `stillValid()` said no. */
  writesDropped = 0

  constructor(options: RemoteLayerOptions = {}) {
    this.name = options.name ?? 'remote'
    this.ttl = options.ttl
    this.serialize = options.serialize ?? true
  }

  // ---- test controls -------------------------------------------------------------------------------

  /**
   * Parks calls of `op` before they are issued; they go out (in order) on `release()`. With `limit`, only
   * the first `limit` calls are parked and later ones go straight through.
   */
  holdRequests(op: RemoteOp, limit?: number): Hold {
    const hold = new Hold(() => this.requestHolds.delete(op), limit)
    this.requestHolds.set(op, hold)
    return hold
  }

  /** Executes calls of `op` but parks their answers until `release()` (optionally only the first `limit`). */
  holdResponses(op: RemoteOp, limit?: number): Hold {
    const hold = new Hold(() => this.responseHolds.delete(op), limit)
    this.responseHolds.set(op, hold)
    return hold
  }

  /** Makes calls of `ops` (default: all) reject; `error` builds the rejection (default LayerUnavailableError). */
  fail(ops: readonly RemoteOp[] = REMOTE_OPS, error?: () => unknown): void {
    const make = error ?? (() => new LayerUnavailableError(this.name, `${this.name}: connection is down`))
    for (const op of ops) this.failures.set(op, make)
  }

  recover(): void {
    this.failures = new Map()
  }

  /** Puts a value straight into the store (as if another instance wrote it). */
  seed(key: string, value: unknown, ttl?: number, tags?: readonly string[]): void {
    const expiresAt = ttl === undefined ? 0 : Date.now() + ttl
    this.store.set(key, { payload: this.encode(value), expiresAt, tags })
  }

  /** The live value stored under `key` (a fresh copy), bypassing holds, failures and counters. */
  peek(key: string): unknown {
    const stored = this.live(key)
    return stored === undefined ? undefined : this.decode(stored.payload)
  }

  /** The stored entry's expiry (0 = none), or undefined when the key is absent. */
  expiresAt(key: string): number | undefined {
    return this.live(key)?.expiresAt
  }

  hasKey(key: string): boolean {
    return this.live(key) !== undefined
  }

  keys(): string[] {
    return [...this.store.keys()].filter((key) => this.live(key) !== undefined)
  }

  get size(): number {
    return this.keys().length
  }

  /** Calls made so far, all operations together. */
  get totalCalls(): number {
    return REMOTE_OPS.reduce((sum, op) => sum + this.calls[op], 0)
  }

  // ---- CacheLayer ----------------------------------------------------------------------------------

  get(key: string): Promise<CacheEntry | undefined> {
    return this.call('get', [key], () => this.read(key))
  }

  getMany(keys: readonly string[]): Promise<(CacheEntry | undefined)[]> {
    return this.call('getMany', keys, () => keys.map((key) => this.read(key)))
  }

  prepareWrites(writes: readonly LayerWrite[]): CommitWrite {
    // Phase one: validate and encode synchronously, without side effects.
    const prepared = writes.map((write) => {
      const ttl = effectiveTtl(write.options?.ttl, this.ttl)
      return {
        key: write.key,
        stored: {
          payload: this.encode(write.entry.value),
          expiresAt: ttl === undefined ? 0 : Date.now() + ttl,
          tags: write.entry.tags,
        },
        stillValid: write.options?.stillValid,
      }
    })
    const keys = prepared.map((item) => item.key)
    return () =>
      this.call('write', keys, () => {
        for (const item of prepared) {
          if (item.stillValid !== undefined && !item.stillValid()) {
            this.writesDropped++
            continue
          }
          this.store.set(item.key, item.stored)
          this.writesApplied++
        }
      })
  }

  delete(key: string): Promise<void> {
    return this.call('delete', [key], () => void this.store.delete(key))
  }

  deleteMany(keys: readonly string[]): Promise<void> {
    return this.call('deleteMany', keys, () => {
      for (const key of keys) this.store.delete(key)
    })
  }

  has(key: string): Promise<boolean> {
    return this.call('has', [key], () => this.live(key) !== undefined)
  }

  clear(): Promise<void> {
    return this.call('clear', [], () => this.store.clear())
  }

  // ---- internals -----------------------------------------------------------------------------------

  private async call<T>(op: RemoteOp, keys: readonly string[], execute: () => T): Promise<T> {
    this.calls[op]++
    this.log.push({ op, keys: [...keys] })
    const failure = this.failures.get(op)
    if (failure !== undefined) throw failure()
    const requestHold = this.requestHolds.get(op)
    if (requestHold !== undefined) {
      await requestHold.pass()
      const late = this.failures.get(op)
      if (late !== undefined) throw late()
    }
    // Issue: the server runs calls in the order they were issued.
    const turns = this.latency(op)
    const executed = this.tail.then(async () => {
      await ticks(turns)
      return execute()
    })
    this.tail = executed.catch(() => undefined)
    const result = await executed
    const responseHold = this.responseHolds.get(op)
    if (responseHold !== undefined) await responseHold.pass()
    await ticks(this.responseLatency(op))
    return result
  }

  private live(key: string): StoredEntry | undefined {
    const stored = this.store.get(key)
    if (stored === undefined) return undefined
    if (stored.expiresAt !== 0 && stored.expiresAt <= Date.now()) {
      this.store.delete(key)
      return undefined
    }
    return stored
  }

  private read(key: string): CacheEntry | undefined {
    const stored = this.live(key)
    if (stored === undefined) return undefined
    return { value: this.decode(stored.payload), expiresAt: stored.expiresAt, tags: stored.tags }
  }

  private encode(value: unknown): unknown {
    if (!this.serialize) return value
    try {
      return structuredClone(value)
    } catch (error) {
      throw new SerializationError(`${this.name}: value cannot be serialised`, error)
    }
  }

  private decode(payload: unknown): unknown {
    return this.serialize ? structuredClone(payload) : payload
  }
}

export { useFakeClock } from '@layercache/test-utils/fake-clock'
