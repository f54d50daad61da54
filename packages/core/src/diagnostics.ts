import { channel, type TracingChannel, tracingChannel } from 'node:diagnostics_channel'
import type { BusOperation, UnverifiedReason } from './distribution'

/**
 * What layercache publishes on `node:diagnostics_channel`, for tracers and metrics (the
 * `@layercache/opentelemetry` and `@layercache/prometheus` packages subscribe here; so can anyone).
 *
 * Tracing channels (`layercache:<operation>`, with the usual `start`/`end`/`asyncStart`/`asyncEnd`/`error`
 * sub-channels) carry one context object per call: the call's arguments when it starts, and what explains
 * its result when it ends (which layer answered, stale or fresh, coalesced or loaded, a refused write-back).
 * Every call is published, memory hits included.
 *
 * The plain channel `layercache:operation.done` carries one {@link OperationDone} per call that went past
 * the in-process layer (a memory hit is counted in `getStats()` and not published there: timing it would
 * cost more than the hit). It is what metrics subscribe to.
 *
 * With nobody subscribed, a call costs one property read per channel it could publish on.
 */

/** Names of the tracing channels, by operation. */
export const TRACING_CHANNELS = {
  get: 'layercache:get',
  getOrSet: 'layercache:getOrSet',
  mget: 'layercache:mget',
  set: 'layercache:set',
  mset: 'layercache:mset',
  delete: 'layercache:delete',
  invalidate: 'layercache:invalidate',
  load: 'layercache:load',
  busPublish: 'layercache:bus.publish',
  busReceive: 'layercache:bus.receive',
  writeBehindFlush: 'layercache:writeBehind.flush',
} as const

/** Plain channels: `operation.done` per call past memory, and state changes of a stack. */
export const PLAIN_CHANNELS = {
  operationDone: 'layercache:operation.done',
  circuit: 'layercache:circuit',
  unverified: 'layercache:bus.unverified',
} as const

export type CacheOperationName = 'get' | 'getOrSet' | 'mget' | 'set' | 'mset' | 'delete'

/** Why a stale value answered a call: inside the revalidate window, or for a failed / slow loader. */
export type StaleReason = 'revalidate' | 'error' | 'timeout'

/** The context of `get`, `getOrSet`, `mget`, `set`, `mset` and `delete` (a `delete` of many keys too). */
export interface CacheOperationContext {
  readonly operation: CacheOperationName
  /** The stack's `name` option ('default' when not given). */
  readonly cache: string
  /** The key as stored (generation and namespace in front); for many keys, the first. */
  readonly key: string
  /** How many keys the call names (1 for single-key calls). */
  readonly keyCount: number
  /** The generation the call ran in, with the `generation` option. */
  readonly generation?: number | undefined
  /** The layer that answered a read (`get`, `getOrSet`): its `name`. Unset when no layer had it. */
  layer?: string
  /** The in-process layer answered and nothing went further (not published on `operation.done`). */
  inProcess?: boolean
  /** A read found a usable value in a layer (for `mget`: every key did). */
  hit?: boolean
  /** `getOrSet`: this caller's answer came from the loader (this call ran it, or joined it). */
  loaded?: boolean
  /** `getOrSet`: the call joined a load already in flight instead of starting one. */
  coalesced?: boolean
  /** A stale value answered, and why. */
  stale?: StaleReason
  /** A write-back was refused because the key was invalidated meanwhile (the fence held). */
  fenced?: boolean
  /** A layer failed or was skipped (circuit open) and the call carried on without it (bypass mode). */
  degraded?: boolean
  /** The layer skipped because its circuit breaker was open (gracefulDegradation). */
  circuitOpen?: string
  /** Set by the tracing channel when the call resolved / rejected. */
  result?: unknown
  error?: unknown
}

export type InvalidationKind =
  | 'tags'
  | 'prefix'
  | 'pattern'
  | 'plan'
  | 'generation'
  | 'version'
  | 'expire'
  | 'expireByTag'
  | 'expireByPrefix'

/**
 * The context of an invalidation by tag, prefix, pattern, plan, generation bump or key-version bump, or of
 * a soft invalidation (`expire`, `expireByTag`, `expireByPrefix`).
 */
export interface InvalidationContext {
  readonly operation: 'invalidate'
  readonly kind: InvalidationKind
  readonly cache: string
  /** Key, tags, prefix, pattern or version name, as stored. */
  readonly target: readonly string[]
  /**
   * Keys removed (tags, prefix, pattern, plan) or marked stale (expire*); the new number for generation
   * and version bumps.
   */
  count?: number
  result?: unknown
  error?: unknown
}

/** Why a load ran: a miss, a background refresh (stale, refresh-ahead, early expiration), or refresh(). */
export type LoadTrigger = 'miss' | 'stale' | 'ahead' | 'early' | 'force'

/** The context of one load (the work behind getOrSet, refresh, warmers and background refreshes). */
export interface LoadContext {
  readonly operation: 'load'
  readonly cache: string
  readonly key: string
  readonly trigger: LoadTrigger
  /** The traced getOrSet this load runs for (absent for background refreshes and untraced callers). */
  readonly parent?: CacheOperationContext | undefined
  /** A layer below memory had a usable value: its name (the loader did not run). */
  layer?: string
  /** The loader ran (its duration is `loaderMs`). */
  loaded?: boolean
  loaderMs?: number
  /** The loader threw (or timed out hard). */
  loaderError?: unknown
  /** A stale value answered the waiters, and why. */
  stale?: StaleReason
  /** What became of the loaded value: written to the layers, refused by the fence, or kept out by policy. */
  writeBack?: 'written' | 'fenced' | 'failed' | 'uncached' | 'skipped'
  /** A layer failed or was skipped and the load carried on without it (bypass mode). */
  degraded?: boolean
  /** The layer skipped because its circuit breaker was open (gracefulDegradation). */
  circuitOpen?: string
  /** The load waited for another instance's (singleFlightCoordinator). */
  waitedForFleet?: boolean
  result?: unknown
  error?: unknown
}

/** The context of a bus message sent (`bus.publish`) or applied (`bus.receive`). */
export interface BusContext {
  readonly operation: 'bus.publish' | 'bus.receive'
  readonly cache: string
  readonly operations: readonly BusOperation[]
  /** `bus.receive`: when the sender sent it (its wall clock, ms since the epoch), when the bus says. */
  readonly sentAt?: number | undefined
  /** `bus.receive`: this host's wall clock when the message was applied (lag = receivedAt − sentAt). */
  readonly receivedAt?: number
  result?: unknown
  error?: unknown
}

/** The context of one batch a WriteBehind consumer hands to its writer (@layercache/write-strategies). */
export interface WriteBehindFlushContext {
  readonly operation: 'writeBehind.flush'
  /** The queue's name. */
  readonly queue: string
  /** Entries taken from the stream for this batch. */
  readonly received: number
  /** Entries handed to the writer (fewer than `received` when `coalesce` kept only each key's newest). */
  readonly count: number
  /** The writer's outcome: written (and acknowledged), or failed, to be retried or dead-lettered. */
  outcome?: 'written' | 'failed'
  /** Entries the failure scheduled for another attempt / moved to the dead-letter stream. */
  retried?: number
  deadLettered?: number
  result?: unknown
  error?: unknown
}

/** Published on `layercache:operation.done` when a call that went past memory settles. */
export interface OperationDone {
  readonly context:
    | CacheOperationContext
    | InvalidationContext
    | LoadContext
    | BusContext
    | WriteBehindFlushContext
  /** Wall time of the call on this process's monotonic clock. */
  readonly durationMs: number
  readonly error?: unknown
}

export interface CircuitMessage {
  readonly cache: string
  readonly layer: string
  readonly state: 'open' | 'half-open' | 'closed'
}

export interface UnverifiedMessage {
  readonly cache: string
  readonly reason: UnverifiedReason
  readonly detail: string
}

type Traced<C extends object> = TracingChannel<unknown, C>

function traced<C extends object>(name: string): Traced<C> {
  const result = tracingChannel<unknown, C>(name)
  // Node before 20.13 has no TracingChannel.hasSubscribers: the call sites read it as a property.
  if (!('hasSubscribers' in result)) {
    Object.defineProperty(result, 'hasSubscribers', {
      get(this: Traced<C>) {
        return (
          this.start.hasSubscribers ||
          this.end.hasSubscribers ||
          this.asyncStart.hasSubscribers ||
          this.asyncEnd.hasSubscribers ||
          this.error.hasSubscribers
        )
      },
    })
  }
  return result
}

/** The channel objects the stack publishes on (module singletons: one lookup at load time). */
export const channels = {
  get: traced<CacheOperationContext>(TRACING_CHANNELS.get),
  getOrSet: traced<CacheOperationContext>(TRACING_CHANNELS.getOrSet),
  mget: traced<CacheOperationContext>(TRACING_CHANNELS.mget),
  set: traced<CacheOperationContext>(TRACING_CHANNELS.set),
  mset: traced<CacheOperationContext>(TRACING_CHANNELS.mset),
  delete: traced<CacheOperationContext>(TRACING_CHANNELS.delete),
  invalidate: traced<InvalidationContext>(TRACING_CHANNELS.invalidate),
  load: traced<LoadContext>(TRACING_CHANNELS.load),
  busPublish: traced<BusContext>(TRACING_CHANNELS.busPublish),
  busReceive: traced<BusContext>(TRACING_CHANNELS.busReceive),
  writeBehindFlush: traced<WriteBehindFlushContext>(TRACING_CHANNELS.writeBehindFlush),
  operationDone: channel(PLAIN_CHANNELS.operationDone),
  circuit: channel(PLAIN_CHANNELS.circuit),
  unverified: channel(PLAIN_CHANNELS.unverified),
}

/**
 * Whether a call on `tracing` would be seen by anyone (its tracing channel or the metrics channel).
 * For layercache's own packages: user code subscribes to the channels by name.
 */
export function observed(tracing: { readonly hasSubscribers: boolean }): boolean {
  return tracing.hasSubscribers || channels.operationDone.hasSubscribers
}

/**
 * For layercache's own packages. Runs `run` as one observed call: through the tracing channel when it
 * has subscribers (so `context` reaches start/end/asyncEnd/error), and timed onto `operation.done` when
 * metrics listen.
 */
export function observe<C extends object, T>(
  tracing: Traced<C>,
  context: C & OperationDone['context'],
  run: () => Promise<T>,
): Promise<T> {
  const done = channels.operationDone
  const timed = done.hasSubscribers
  const started = timed ? performance.now() : 0
  const promise = tracing.hasSubscribers ? tracing.tracePromise(run, context) : run()
  if (!timed) return promise
  return promise.then(
    (value) => {
      // A memory hit is traced (a tracer wraps every call) but not timed: metrics count it in the stats.
      if ((context as { inProcess?: boolean }).inProcess !== true) {
        done.publish({ context, durationMs: performance.now() - started } satisfies OperationDone)
      }
      return value
    },
    (error: unknown) => {
      done.publish({ context, durationMs: performance.now() - started, error } satisfies OperationDone)
      throw error
    },
  )
}
