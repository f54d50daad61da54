import type { Waiters } from './cancellation'
import {
  type CacheOperationContext,
  channels,
  type LoadContext as LoadTrace,
  type LoadTrigger,
  observe,
  observed,
} from './diagnostics'
import type { SingleFlightCoordinator, SingleFlightLease } from './distribution'
import { type CacheEntry, isFresh } from './entry'
import type { ErrorThrottle } from './error-throttle'
import { LoaderTimeoutError } from './errors'
import { type FleetHost, FleetSingleFlight } from './fleet-single-flight'
import { buildEntry, type FreshnessPolicy, judge, usableOnError } from './freshness'
import type { CacheLayer, LocalCacheLayer } from './layer'
import type { Lifecycle } from './lifecycle'
import { LoadContext, type LoaderContext } from './loader-context'
import { type LoadPlan, scopeTags } from './plan'
import type { ReadThrough } from './read-through'
import type { LayerOutcome, WriteGate } from './write-gate'

/** What LoadRunner needs of its stack (besides what the fleet single-flight needs). */
export interface LoadRunnerHost extends FleetHost {
  readonly gate: Pick<WriteGate, 'forget' | 'allows' | 'open' | 'close' | 'writeLoaded'>
  readonly reads: Pick<ReadThrough, 'readThrough'>
  readonly l1: LocalCacheLayer | undefined
  /** Layers shared between instances: loads take their fence snapshots there. */
  readonly sharedLayers: readonly CacheLayer[]
  readonly flights: Map<string, Promise<unknown>>
  readonly errorThrottle: ErrorThrottle
  readonly coordinator: SingleFlightCoordinator | undefined
  /** The stack's name, for traces. */
  readonly name: string
  /** Knows every load running, so close() can let it finish or abandon it. */
  readonly lifecycle: Pick<Lifecycle, 'track'>
  /** Learns each load's controller, to abort it once every caller waiting for it aborted. */
  readonly waiters: Pick<Waiters, 'started'>
  answerOf(entry: CacheEntry): unknown
  countMiss(full: string): void
  countStale(full: string, reason: 'revalidate' | 'error' | 'timeout'): void
  countRefresh(full: string, verdict: 'ahead' | 'early' | 'revalidate'): void
  /** Tells the shared layers entries with dependsOn exist. */
  markDependencies(): Promise<unknown>
}

/** The tags a loaded entry is stored with: the loader's or caller's (namespaced) and the dependency tags. */
function storedTagsOf(plan: LoadPlan, tags: readonly string[] | undefined): readonly string[] | undefined {
  const scoped = scopeTags(tags, plan.tagPrefix)
  if (plan.dependencyTags === undefined || plan.dependencyTags.length === 0) return scoped
  return [...(scoped ?? []), ...plan.dependencyTags]
}

/** Produces the value for a missing or stale key. The context offers the stale value, an abort signal and more. */
export type Loader<T> = (context: LoaderContext<T>) => T | Promise<T>

/** A promise with its settle functions; settling twice is a no-op. */
class Answer<T> {
  settled = false
  readonly promise: Promise<T>
  private resolveFn!: (value: T) => void
  private rejectFn!: (error: unknown) => void

  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolveFn = resolve
      this.rejectFn = reject
    })
  }

  resolve(value: T): void {
    if (this.settled) return
    this.settled = true
    this.resolveFn(value)
  }

  reject(error: unknown): void {
    if (this.settled) return
    this.settled = true
    this.rejectFn(error)
  }
}

/** Runs loads for getOrSet, refresh and warm: single-flight registration, freshness policy, write-back. */
export class LoadRunner {
  /** Present with a singleFlightCoordinator. */
  private readonly fleet: FleetSingleFlight | undefined

  constructor(private readonly state: LoadRunnerHost) {
    this.fleet = state.coordinator === undefined ? undefined : new FleetSingleFlight(state.coordinator, state)
  }

  /**
   * Starts a load of `full`, registered as the key's flight; the answer may come before the loader ends.
   * A background refresh answers at once with the value it refreshes, so callers that join it get that
   * value without waiting, and nothing it does later counts as a stale answer to anyone.
   */
  startLoad<T>(
    full: string,
    key: string,
    loader: Loader<T>,
    plan: LoadPlan,
    current: CacheEntry | undefined,
    mode: 'load' | 'background' | 'force',
    trace?: LoadTrace,
    trigger?: LoadTrigger,
  ): Promise<T> {
    const state = this.state
    const answer = new Answer<T>()
    if (trace === undefined && observed(channels.load)) {
      trace = this.newTrace(
        full,
        mode === 'load' ? 'miss' : mode === 'force' ? 'force' : (trigger ?? 'stale'),
      )
    }
    if (mode === 'background' && current !== undefined) {
      answer.resolve((current.absent === true ? undefined : current.value) as T)
    }
    state.flights.set(full, answer.promise)
    const detach = () => {
      // An invalidation may have detached this flight and a newer one may own the key now.
      if (state.flights.get(full) === answer.promise) state.flights.delete(full)
    }
    const controller = new AbortController()
    const run = () => this.runLoad(full, key, loader, plan, current, mode, answer, detach, controller, trace)
    const running = trace === undefined ? run() : observe(channels.load, trace, run)
    running.then(detach, (error: unknown) => {
      detach()
      answer.reject(error)
    })
    state.lifecycle.track(controller, running)
    state.waiters.started(answer.promise, controller)
    return answer.promise
  }

  /** A load's trace record, for a caller that reports what answered it (see CacheStack's getOrSet). */
  newTrace(key: string, trigger: LoadTrigger, parent?: CacheOperationContext): LoadTrace {
    return { operation: 'load', cache: this.state.name, key, trigger, parent }
  }

  /** Serves `current` as it is and refreshes it in the background, once, unless a load is already running. */
  refreshInBackground<T>(
    full: string,
    key: string,
    loader: Loader<T>,
    plan: LoadPlan,
    current: CacheEntry,
    verdict: 'ahead' | 'early' | 'revalidate',
  ): void {
    const state = this.state
    if (verdict === 'revalidate') this.state.countStale(full, 'revalidate')
    else state.stats.earlyRefreshes++
    // A refresh that just failed is not retried on every read: the same throttle as stale-if-error.
    if (state.flights.has(full) || state.errorThrottle.blocked(full)) return
    this.state.countRefresh(full, verdict)
    // Its outcome is in stats and events; nobody awaits it.
    const trigger = verdict === 'revalidate' ? 'stale' : verdict
    this.startLoad(full, key, loader, plan, current, 'background', undefined, trigger).catch(() => {})
  }

  /**
   * The load behind getOrSet: lower layers first (a fresh entry there ends it, unless it is due for an
   * early refresh), then, with a coordinator, the fleet's lease or another instance's answer, then the
   * loader under the freshness policy. Settles `answer` exactly once, possibly early (a stale or
   * due-for-refresh value served) while the loader runs on to update the cache. A value invalidated since
   * the load began is never served as a fallback.
   */
  private async runLoad<T>(
    full: string,
    key: string,
    loader: Loader<T>,
    plan: LoadPlan,
    current: CacheEntry | undefined,
    mode: 'load' | 'background' | 'force',
    answer: Answer<T>,
    detach: () => void,
    controller: AbortController,
    trace: LoadTrace | undefined,
  ): Promise<void> {
    const state = this.state
    const policy = plan.policy
    const force = mode === 'force'
    const gate = state.gate
    const ticket = gate.open()
    let fallback = force ? undefined : current
    // What shared layers had invalidated as the load starts, so an invalidation on any instance during the
    // load fences the write-back (taken in parallel with the read below).
    const fences =
      state.sharedLayers.length > 0
        ? this.fenceSnapshots(full, plan, storedTagsOf(plan, plan.tags))
        : undefined
    // The fleet-wide lease, from its acquisition until it is given back (on every way out).
    let lease: SingleFlightLease | undefined
    try {
      const from = state.l1 === undefined ? 0 : 1
      const below = from < state.layers.length
      if (!force && below) {
        const lower = await this.state.reads.readThrough(full, from, plan.mode, true, true, trace)
        // Another instance may already have refreshed it: a newer entry below wins over the one we hold.
        if (
          lower !== undefined &&
          (current === undefined || (lower.createdAt ?? 0) > (current.createdAt ?? 0))
        ) {
          const verdict = lower.freshUntil === undefined ? 'fresh' : judge(lower, policy)
          if (verdict === 'fresh') {
            answer.resolve(this.state.answerOf(lower) as T)
            return
          }
          if (verdict !== 'fallback') {
            // Served now and refreshed by this very load, as an L1 hit with this verdict would be.
            if (!answer.settled) {
              if (trace !== undefined && verdict === 'revalidate') trace.stale = 'revalidate'
              if (verdict === 'revalidate') this.state.countStale(full, 'revalidate')
              else state.stats.earlyRefreshes++
              this.state.countRefresh(full, verdict)
            }
            answer.resolve(this.state.answerOf(lower) as T)
          }
          fallback = lower
        }
      } else if (!force) {
        this.state.countMiss(full)
      }
      const stillValid = () => gate.allows(full, ticket)
      const canFallBack = usableOnError(fallback, policy)
      if (canFallBack && state.errorThrottle.blocked(full)) {
        this.serveStale(answer, full, fallback!, 'error', trace)
        return
      }
      // An explicit refresh() recomputes whatever the fleet is doing; the rest takes turns.
      if (this.fleet !== undefined && !force && below) {
        const refreshing = mode === 'background' || answer.settled
        const turn = await this.fleet.turn(full, refreshing, () =>
          this.lookBelow(full, from, plan, current, trace),
        )
        if (trace !== undefined && turn !== 'skip' && !('lease' in turn)) trace.waitedForFleet = true
        if (turn === 'skip') return
        if ('found' in turn) {
          answer.resolve(state.answerOf(turn.found) as T)
          return
        }
        if ('result' in turn) {
          answer.resolve(turn.result.value as T)
          return
        }
        lease = turn.lease
      }
      const previous = fallback ?? current
      const context = new LoadContext<T>(
        key,
        previous === undefined || previous.absent === true ? undefined : (previous.value as T),
        plan.ttl,
        plan.tags,
        lease?.token,
        controller,
      )
      let value: T
      // The snapshot must be in Redis before the loader reads the database (on a Cluster its commands
      // went to other nodes than the read, so the read's answer does not prove they landed).
      const fenceMap = fences === undefined ? undefined : await fences
      const started = performance.now()
      try {
        const standIn = canFallBack ? fallback : undefined
        if (trace !== undefined) trace.loaded = true
        value = await this.callLoader(full, loader, context, policy, standIn, stillValid, answer, trace)
      } catch (error) {
        if (trace !== undefined) trace.loaderError = error
        if (error instanceof LoaderTimeoutError) detach()
        if (canFallBack || answer.settled) state.errorThrottle.failed(full, policy.errorRetryAfter)
        if (canFallBack && stillValid()) {
          this.serveStale(answer, full, fallback!, 'error', trace)
          return
        }
        answer.reject(error)
        return
      }
      state.errorThrottle.forget(full)
      const loadMs = performance.now() - started
      if (trace !== undefined) trace.loaderMs = loadMs
      // A lease lost during the load may have a newer holder already: its value must not be overwritten.
      const outcome =
        lease === undefined || lease.held
          ? await this.writeLoaded(full, value, context, plan, loadMs, ticket, fenceMap)
          : 'skipped'
      if (trace !== undefined) trace.writeBack = outcome
      // What may now be cached here (a layer that failed in bypass mode leaves it in the others).
      const landed = outcome === 'written' || outcome === 'failed'
      if (lease !== undefined) {
        const held = lease
        lease = undefined
        // Waiters read what was cached; a value that was not (and not fenced) is handed to them instead.
        const handOver = outcome === 'uncached' && held.held && gate.allows(full, ticket)
        await this.fleet!.release(full, held, handOver ? { value } : undefined, landed)
      }
      // The protected copy the fastest layer now holds, so a load and a hit hand out the same kind of value.
      const copy = landed ? state.l1?.get(full) : undefined
      answer.resolve((copy === undefined || copy.absent === true ? value : copy.value) as T)
    } finally {
      // The loader failed (or a stale value stood in): waiters find nothing and take over, one at a time.
      if (lease !== undefined) await this.fleet!.release(full, lease, undefined, false)
      gate.close()
    }
  }

  /**
   * A fresh entry below the in-process layer that is newer than `current` (the one being refreshed), as
   * another instance's load leaves it. Its miss is not counted again.
   */
  private async lookBelow(
    full: string,
    from: number,
    plan: LoadPlan,
    current: CacheEntry | undefined,
    trace: LoadTrace | undefined,
  ): Promise<CacheEntry | undefined> {
    const entry = await this.state.reads.readThrough(full, from, plan.mode, true, false, trace)
    if (entry === undefined || !isFresh(entry)) return undefined
    if (current !== undefined && (entry.createdAt ?? 0) <= (current.createdAt ?? 0)) return undefined
    return entry
  }

  /**
   * Runs the loader with the soft and hard timeouts of the policy. The soft timeout answers with
   * `fallback` (when there is one) and lets the loader go on; the hard one aborts the context's signal
   * and throws LoaderTimeoutError (a late result is then dropped).
   */
  private async callLoader<T>(
    full: string,
    loader: Loader<T>,
    context: LoadContext<T>,
    policy: FreshnessPolicy,
    fallback: CacheEntry | undefined,
    fallbackValid: () => boolean,
    answer: Answer<T>,
    trace: LoadTrace | undefined,
  ): Promise<T> {
    const state = this.state
    state.stats.loaderCalls++
    const timed = state.events.listening('load')
    const started = timed ? performance.now() : 0
    let soft: NodeJS.Timeout | undefined
    let hard: NodeJS.Timeout | undefined
    try {
      const loading = Promise.resolve().then(() => loader(context))
      if (policy.softTimeout !== undefined && fallback !== undefined) {
        soft = setTimeout(() => {
          state.stats.softTimeouts++
          if (state.events.listening('timeout')) state.events.emit('timeout', { key: full, kind: 'soft' })
          // Invalidated meanwhile: there is no stale value any more, so wait for the loader.
          if (fallbackValid()) this.serveStale(answer, full, fallback, 'timeout', trace)
        }, policy.softTimeout)
      }
      let value: T
      if (policy.hardTimeout === undefined) {
        value = await loading
      } else {
        const limit = policy.hardTimeout
        loading.catch(() => {}) // a late failure after the hard timeout has nobody left to tell
        value = await new Promise<T>((resolve, reject) => {
          hard = setTimeout(() => {
            state.stats.hardTimeouts++
            if (state.events.listening('timeout')) state.events.emit('timeout', { key: full, kind: 'hard' })
            context.controller.abort(new LoaderTimeoutError(context.key, limit))
            reject(new LoaderTimeoutError(context.key, limit))
          }, limit)
          loading.then(resolve, reject)
        })
      }
      if (timed) state.events.emit('load', { key: full, durationMs: performance.now() - started })
      return value
    } catch (error) {
      state.stats.loaderErrors++
      if (timed) state.events.emit('load', { key: full, durationMs: performance.now() - started, error })
      throw error
    } finally {
      clearTimeout(soft)
      clearTimeout(hard)
    }
  }

  /**
   * Caches a loaded value under the policy (negative caching, shouldCache, TTL and tags the loader set),
   * through the write gate: refused if the key was invalidated since the load began. `uncached`: the
   * policy kept it out.
   */
  private async writeLoaded<T>(
    full: string,
    value: T,
    context: LoadContext<T>,
    plan: LoadPlan,
    loadMs: number,
    ticket: number,
    fences: ReadonlyMap<string, unknown> | undefined,
  ): Promise<LayerOutcome | 'uncached'> {
    const state = this.state
    const policy = plan.policy
    const nothing = value === undefined || value === null
    let built: { entry: CacheEntry; ttl: number | undefined }
    if (nothing && policy.negativeTtl !== undefined) {
      built = { entry: { value: null, expiresAt: 0, absent: value === undefined }, ttl: policy.negativeTtl }
    } else if (value === undefined || (policy.shouldCache !== undefined && !policy.shouldCache(value))) {
      state.stats.uncached++
      return 'uncached'
    } else {
      built = buildEntry(value, context.ttl, storedTagsOf(plan, context.tags), policy, loadMs)
    }
    return state.gate.writeLoaded(full, built.entry, built.ttl, ticket, fences)
  }

  /**
   * Every shared layer's fence snapshot, by layer name. A layer that could not answer gets `null`: it
   * cannot tell what was invalidated during the load, so it refuses the write-back (always safe).
   */
  private async fenceSnapshots(
    full: string,
    plan: LoadPlan,
    tags: readonly string[] | undefined,
  ): Promise<ReadonlyMap<string, unknown>> {
    const layers = this.state.sharedLayers
    // A load with dependencies marks them before its loader runs (see markDependencies); if the mark
    // fails, its write-back is refused like one without a snapshot.
    const marking =
      plan.dependencyTags !== undefined && plan.dependencyTags.length > 0
        ? this.state.markDependencies().then(
            () => true,
            () => false,
          )
        : true
    const [marked, ...snapshots] = await Promise.all([
      marking,
      ...layers.map((layer) => layer.fenceSnapshot!(full, tags).catch(() => null)),
    ])
    return new Map(snapshots.map((snapshot, i) => [layers[i]!.name, marked ? snapshot : null]))
  }

  /** Answers with a stale entry standing in for a failed or slow load (a no-op once answered). */
  private serveStale<T>(
    answer: Answer<T>,
    full: string,
    entry: CacheEntry,
    reason: 'error' | 'timeout',
    trace: LoadTrace | undefined,
  ) {
    if (answer.settled) return
    if (trace !== undefined) trace.stale = reason
    this.state.countStale(full, reason)
    answer.resolve(this.state.answerOf(entry) as T)
  }
}
