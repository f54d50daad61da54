import { InvalidOptionError, InvalidValueError } from './errors'
import type { LoaderContext } from './loader-context'

/** What a batch loader receives besides its keys: a signal, and the per-key adjustments of LoaderContext. */
export interface BatchLoaderContext {
  /** Aborts once every caller waiting for one of these keys aborted its own signal. */
  readonly signal: AbortSignal
  /** Cache `key`'s value for this long instead. */
  setTtl(key: string, ttl: number): void
  /** Tag `key`'s value from what it contains. */
  setTags(key: string, tags: readonly string[]): void
}

/**
 * What `getOrSetMany` calls with the keys no layer had (as the caller named them, in its order), once per
 * batch: their values, in the same order (`undefined`: nothing to cache for that key).
 */
export type BatchLoader<T> = (
  keys: readonly string[],
  context: BatchLoaderContext,
) => readonly (T | undefined)[] | Promise<readonly (T | undefined)[]>

interface Pending<T> {
  readonly key: string
  readonly context: LoaderContext<unknown>
  resolve(value: T | undefined): void
  reject(error: unknown): void
}

/**
 * The DataLoader of one `getOrSetMany` call. Each key goes through getOrSet (memory hit, single-flight
 * with any load of the key, lower layers, fences, write-back); the loader getOrSet calls for a key that
 * missed everywhere does not load it but joins this batch. The batch calls the caller's loader once, with
 * every key that joined, as soon as each key the call expects to load has either joined or been answered
 * without loading (a hit). Keys that join later (a background refresh of a stale key) go in a batch of
 * their own, on the next turn.
 */
export class BatchLoad<T> {
  private queue: Pending<T>[] = []
  private scheduled = false
  /** Each expected key's place in the caller's list: keys join in the order their reads finish, which
   * on a Cluster depends on which node answered first, but the loader sees them in the caller's order. */
  private readonly rank: ReadonlyMap<string, number>

  constructor(
    private readonly load: BatchLoader<T>,
    /** Keys still expected to join or be answered, in the caller's order; the batch goes once none is left. */
    private readonly expected: Set<string>,
  ) {
    this.rank = new Map([...expected].map((key, index) => [key, index]))
  }

  /** The per-key loader handed to getOrSet for `key`. */
  loaderFor(key: string): (context: LoaderContext<unknown>) => Promise<T | undefined> {
    return (context) =>
      new Promise<T | undefined>((resolve, reject) => {
        this.queue.push({ key, context, resolve, reject })
        this.settled(key)
      })
  }

  /** `key`'s getOrSet ended; if it never called its loader, the batch stops waiting for it. */
  settled(key: string): void {
    this.expected.delete(key)
    if (this.expected.size === 0 && this.queue.length > 0) this.dispatchSoon()
  }

  private dispatchSoon(): void {
    if (this.scheduled) return
    this.scheduled = true
    // On the next turn, so loaders invoked by the same reply (one batch of Redis reads) share the call.
    setImmediate(() => {
      this.scheduled = false
      const rankOf = (pending: Pending<T>) => this.rank.get(pending.key) ?? Number.POSITIVE_INFINITY
      const batch = this.queue.sort((a, b) => rankOf(a) - rankOf(b))
      this.queue = []
      if (batch.length > 0) void this.run(batch)
    })
  }

  private async run(batch: readonly Pending<T>[]): Promise<void> {
    const controller = new AbortController()
    let aborted = 0
    const onAbort = () => {
      if (++aborted === batch.length) controller.abort(batch[0]!.context.signal.reason)
    }
    for (const pending of batch) {
      if (pending.context.signal.aborted) onAbort()
      else pending.context.signal.addEventListener('abort', onAbort, { once: true })
    }
    const byKey = new Map(batch.map((pending) => [pending.key, pending.context]))
    const contextOf = (key: string) => {
      const context = byKey.get(key)
      if (context === undefined) throw new InvalidOptionError(`getOrSetMany: "${key}" is not in this batch`)
      return context
    }
    const context: BatchLoaderContext = {
      signal: controller.signal,
      setTtl: (key, ttl) => contextOf(key).setTtl(ttl),
      setTags: (key, tags) => contextOf(key).setTags(tags),
    }
    try {
      const keys = batch.map((pending) => pending.key)
      const values = await this.load(keys, context)
      if (!Array.isArray(values) || values.length !== keys.length) {
        throw new InvalidValueError(
          `getOrSetMany: the loader must return an array of ${keys.length} values, one per key in order; ` +
            `got ${Array.isArray(values) ? `${values.length} values` : typeof values}`,
        )
      }
      for (let i = 0; i < batch.length; i++) batch[i]!.resolve(values[i])
    } catch (error) {
      for (const pending of batch) pending.reject(error)
    } finally {
      for (const pending of batch) pending.context.signal.removeEventListener('abort', onAbort)
    }
  }
}
