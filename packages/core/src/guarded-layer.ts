import { CircuitBreaker, type CircuitState, REFUSED } from './circuit-breaker'
import type { CacheEntry } from './entry'
import {
  CircuitOpenError,
  CorruptEntriesError,
  CorruptEntryError,
  LayerCacheError,
  LayerUnavailableError,
  WriteFencedError,
} from './errors'
import type { CacheLayer, CommitWrite, LayerWrite, MaybePromise } from './layer'

/**
 * How a call's error speaks of the layer's health: it could not answer (a failure), it answered (a write
 * it fenced, an entry it holds but that cannot be used), or it refused the input and says nothing. Bad
 * data is not a failure: one corrupt key must not switch the layer off for every healthy one.
 */
function verdictOf(error: unknown): 'failed' | 'succeeded' | 'released' {
  if (
    error instanceof WriteFencedError ||
    error instanceof CorruptEntryError ||
    error instanceof CorruptEntriesError
  ) {
    return 'succeeded'
  }
  if (error instanceof LayerUnavailableError || !(error instanceof LayerCacheError)) return 'failed'
  return 'released'
}

/**
 * A remote layer behind a circuit breaker: the same CacheLayer, except that while the circuit is open its
 * calls are not made and fail at once with CircuitOpenError. Optional methods exist here only when the
 * inner layer has them, since the stack detects capabilities by their presence.
 */
export class GuardedLayer implements CacheLayer {
  declare readonly invalidateTags?: CacheLayer['invalidateTags']
  declare readonly invalidateKeys?: CacheLayer['invalidateKeys']
  declare readonly fenceSnapshot?: CacheLayer['fenceSnapshot']
  declare readonly readCounter?: CacheLayer['readCounter']
  declare readonly incrementCounter?: CacheLayer['incrementCounter']
  declare readonly markDependencies?: CacheLayer['markDependencies']
  declare readonly dependenciesMarked?: CacheLayer['dependenciesMarked']
  declare readonly sharedGeneration?: CacheLayer['sharedGeneration']
  declare readonly bumpSharedGeneration?: CacheLayer['bumpSharedGeneration']
  private readonly breaker: CircuitBreaker

  constructor(
    readonly inner: CacheLayer,
    options: { readonly retryAfterMs: number; readonly failureThreshold: number },
    onChange: (state: CircuitState) => void,
  ) {
    this.breaker = new CircuitBreaker({ ...options, onChange })
    // Each call looks the inner method up again, as a stack calling the layer directly would.
    if (inner.invalidateTags) {
      this.invalidateTags = (tags, mode) => this.guard(() => inner.invalidateTags!(tags, mode))
    }
    if (inner.invalidateKeys) {
      this.invalidateKeys = (match, opts) => this.guard(() => inner.invalidateKeys!(match, opts))
    }
    if (inner.fenceSnapshot) {
      this.fenceSnapshot = (key, tags) => this.guard(() => inner.fenceSnapshot!(key, tags))
    }
    if (inner.readCounter) this.readCounter = (name) => this.guard(() => inner.readCounter!(name))
    if (inner.incrementCounter) {
      this.incrementCounter = (name) => this.guard(() => inner.incrementCounter!(name))
    }
    if (inner.markDependencies) this.markDependencies = () => this.guard(() => inner.markDependencies!())
    if (inner.dependenciesMarked) {
      this.dependenciesMarked = () => this.guard(() => inner.dependenciesMarked!())
    }
    if (inner.sharedGeneration) {
      this.sharedGeneration = (atLeast) => this.guard(() => inner.sharedGeneration!(atLeast))
    }
    if (inner.bumpSharedGeneration) {
      this.bumpSharedGeneration = (atLeast) => this.guard(() => inner.bumpSharedGeneration!(atLeast))
    }
  }

  get name(): string {
    return this.inner.name
  }

  get local(): boolean {
    return this.inner.local
  }

  get ttl(): number | undefined {
    return this.inner.ttl
  }

  get circuit(): CircuitState {
    return this.breaker.state
  }

  get(key: string): Promise<CacheEntry | undefined> {
    return this.guard(() => this.inner.get(key))
  }

  getMany(keys: readonly string[]): Promise<(CacheEntry | undefined)[]> {
    return this.guard(() => this.inner.getMany(keys))
  }

  /** Preparing is validation (bad input still throws here); the commit is the I/O, and is guarded. */
  prepareWrites(writes: readonly LayerWrite[]): CommitWrite {
    const commit = this.inner.prepareWrites(writes)
    const name = this.inner.name
    // A load that could not take this layer's fence snapshot has its write-back refused by the layer
    // without I/O: an outcome that says nothing of its health (counting it would reopen a circuit that
    // just closed, once the loads begun during the outage finish).
    if (writes.every((write) => write.options?.fences?.get(name) === null)) {
      return () => (this.breaker.state === 'closed' ? commit() : Promise.reject(this.openError()))
    }
    return () => this.guard(commit)
  }

  delete(key: string): Promise<void> {
    return this.guard(() => this.inner.delete(key))
  }

  deleteMany(keys: readonly string[]): Promise<void> {
    return this.guard(() => this.inner.deleteMany(keys))
  }

  has(key: string): Promise<boolean> {
    return this.guard(() => this.inner.has(key))
  }

  clear(): Promise<void> {
    return this.guard(() => this.inner.clear())
  }

  private openError(): CircuitOpenError {
    return new CircuitOpenError(this.inner.name, this.breaker.retryAt)
  }

  private guard<T>(call: () => MaybePromise<T>): Promise<T> {
    const breaker = this.breaker
    const permit = breaker.enter()
    if (permit === REFUSED) return Promise.reject(this.openError())
    let reply: MaybePromise<T>
    try {
      reply = call()
    } catch (error) {
      breaker[verdictOf(error)](permit)
      return Promise.reject(error)
    }
    return Promise.resolve(reply).then(
      (value) => {
        breaker.succeeded(permit)
        return value
      },
      (error: unknown) => {
        breaker[verdictOf(error)](permit)
        throw error
      },
    )
  }
}
