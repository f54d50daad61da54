import { BusLink, readBusOption } from './bus-link'
import { Waiters } from './cancellation'
import { type CircuitState, type GracefulDegradationOptions, readDegradationOption } from './circuit-breaker'
import { type CircuitMessage, channels } from './diagnostics'
import type { InvalidationBus, SingleFlightCoordinator } from './distribution'
import type { CacheEntry } from './entry'
import { ErrorThrottle } from './error-throttle'
import { asUnavailable, type CorruptEntryError, InvalidOptionError } from './errors'
import { CacheEvents } from './events'
import { readCoordinatorOption } from './fleet-single-flight'
import { FRESHNESS_OPTIONS, type FreshnessOptions, resolveFreshness } from './freshness'
import {
  type GenerationCleanupOptions,
  Generations,
  readCleanupOption,
  readGenerationOption,
} from './generations'
import { GuardedLayer } from './guarded-layer'
import { InvalidationFence } from './invalidation-fence'
import { KeyVersions } from './key-versions'
import { type CacheLayer, isLocalLayer, type LocalCacheLayer } from './layer'
import { type ClosingSteps, Lifecycle } from './lifecycle'
import { LoadRunner } from './load-runner'
import type { LoadPlan } from './plan'
import { ReadThrough } from './read-through'
import { SoftExpiry } from './soft-expiry'
import { StatsCollector } from './stats'
import { assertKnownOptions, assertOneOf, assertTtl } from './validation'
import { Warmers } from './warmers'
import { type LayerErrorMode, WriteGate } from './write-gate'

/**
 * What to do when a remote layer fails (down, timed out):
 * - `throw`: reject with a LayerUnavailableError (fail fast; never hang).
 * - `bypass`: treat the layer as a miss, run the loader, skip writes to it, count and emit the error.
 * Deletes always reject on failure: an invalidation that did not reach Redis must not look done.
 */
export type { GracefulDegradationOptions, LayerErrorMode }
export const LAYER_ERROR_MODES: readonly LayerErrorMode[] = ['throw', 'bypass']

export interface CacheStackOptions extends FreshnessOptions {
  /**
   * What this stack is called in traces and metrics (`cache` on every diagnostics_channel message, the
   * `cache` label / attribute of the exporters). Default 'default'.
   */
  readonly name?: string
  /** Default entry lifetime in ms when a call gives none; each layer still caps it with its own ttl. */
  readonly ttl?: number
  /** Default reaction to a failing remote layer. Default `throw` (`bypass` with gracefulDegradation). */
  readonly onLayerError?: LayerErrorMode
  /**
   * Turns on generations: every key lives under `g<n>:` and `bumpGeneration()` moves every instance to
   * fresh key space at once. The number given is a floor; the current one is shared through Redis.
   */
  readonly generation?: number
  /** After this instance bumps the generation, remove the previous generation's keys in batches. */
  readonly generationCleanup?: GenerationCleanupOptions
  /**
   * Tells the other instances' in-process layers about every invalidation made here, and applies theirs
   * (RedisInvalidationBus from @layercache/distributed).
   */
  readonly invalidationBus?: InvalidationBus
  /** With a bus: also make other instances drop keys this instance writes (set/mset). Default false. */
  readonly broadcastL1Invalidation?: boolean
  /** One loader per key across every instance (RedisSingleFlightCoordinator). */
  readonly singleFlightCoordinator?: SingleFlightCoordinator
  /**
   * Keep serving from the in-process layers and loaders while a remote layer fails: failing remote calls
   * are bypassed, and a circuit breaker stops calling the layer for `retryAfterMs` after
   * `failureThreshold` consecutive failures, then lets one probe through.
   */
  readonly gracefulDegradation?: GracefulDegradationOptions
  /**
   * Where the layers keep the key and tag index they share with other instances (RedisTagIndex from
   * @layercache/distributed): handed to every layer with a `useTagIndex` method.
   */
  readonly tagIndex?: object
}

export const STACK_OPTIONS = [
  'name',
  'ttl',
  'onLayerError',
  'generation',
  'generationCleanup',
  'invalidationBus',
  'broadcastL1Invalidation',
  'singleFlightCoordinator',
  'gracefulDegradation',
  'tagIndex',
  ...FRESHNESS_OPTIONS,
] as const

/**
 * The state shared by a stack and every namespace view of it, and the bookkeeping (stats and events) that
 * reads, writes and loads report through.
 */
export class StackState {
  readonly reads: ReadThrough
  /** The one place deciding whether a value may reach a layer, and the one local invalidation. */
  readonly gate: WriteGate
  readonly loads: LoadRunner
  /** Soft invalidation: expire, expireByTag, expireByPrefix. */
  readonly expiry: SoftExpiry
  /** The layers the stack calls: with gracefulDegradation, remote ones behind their circuit breakers. */
  readonly layers: readonly CacheLayer[]
  /** The layers as the caller gave them. */
  readonly userLayers: readonly CacheLayer[]
  /** The first layer when it is in-process: the hot path reads it without an await. */
  readonly l1: LocalCacheLayer | undefined
  readonly stats: StatsCollector
  readonly events = new CacheEvents()
  readonly fence = new InvalidationFence()
  readonly flights = new Map<string, Promise<unknown>>()
  /** Who waits for each load, so a load every waiter aborted is stopped. */
  readonly waiters = new Waiters(this.flights)
  readonly defaultTtl: number | undefined
  readonly onLayerError: LayerErrorMode
  readonly freshnessDefaults: FreshnessOptions
  /** The plan of a getOrSet without options (resolved once). */
  readonly defaultPlan: LoadPlan
  readonly errorThrottle = new ErrorThrottle()
  /** Open or closed, and the loads running (so close() can finish or abandon them). */
  readonly lifecycle = new Lifecycle()
  /** Set once this process writes an entry with `dependsOn`. */
  dependenciesUsed = false
  private dependenciesSeen = false
  /** Layers shared between instances (Redis): loads take their fence snapshots when they start. */
  readonly sharedLayers: readonly CacheLayer[]
  /** Present when the stack runs with generations. */
  readonly generations: Generations | undefined
  /** The current generation's key prefix ('' without generations): in front of every key. */
  keyspace = ''
  readonly keyVersions: KeyVersions
  readonly warmers = new Warmers((key, outcome) => this.warmerRan(key, outcome))
  /** Present with the invalidationBus option: announces invalidations and applies other instances'. */
  readonly bus: BusLink | undefined
  /** Present with the singleFlightCoordinator option: one loader per key across every instance. */
  readonly coordinator: SingleFlightCoordinator | undefined
  /** The `name` option: how traces and metrics tell this stack from others in the process. */
  readonly name: string

  constructor(layers: readonly CacheLayer[], options: CacheStackOptions) {
    assertKnownOptions(options, STACK_OPTIONS, 'CacheStack')
    if (!Array.isArray(layers) || layers.length === 0) {
      throw new InvalidOptionError('CacheStack needs at least one layer, ordered fastest first')
    }
    const names = new Set<string>()
    for (const layer of layers) {
      if (!layer || typeof layer.get !== 'function' || typeof layer.name !== 'string') {
        throw new InvalidOptionError('CacheStack: every layer must implement the CacheLayer contract')
      }
      if (names.has(layer.name)) {
        throw new InvalidOptionError(
          `CacheStack: two layers are named "${layer.name}"; give each a unique name`,
        )
      }
      names.add(layer.name)
    }
    if (options.tagIndex !== undefined) {
      const users = layers.filter((layer) => typeof layer.useTagIndex === 'function')
      if (users.length === 0) {
        throw new InvalidOptionError('tagIndex needs a layer that can use it (RedisLayer)')
      }
      for (const layer of users) layer.useTagIndex!(options.tagIndex)
    }
    this.name = readNameOption(options.name)
    this.defaultTtl = assertTtl(options.ttl, 'CacheStack ttl')
    this.coordinator = readCoordinatorOption(options.singleFlightCoordinator)
    const degradation = readDegradationOption(options.gracefulDegradation)
    this.onLayerError =
      assertOneOf(options.onLayerError, LAYER_ERROR_MODES, 'onLayerError') ??
      (degradation === undefined ? 'throw' : 'bypass')
    this.freshnessDefaults = options
    this.defaultPlan = {
      ttl: this.defaultTtl,
      tags: undefined,
      tagPrefix: '',
      mode: this.onLayerError,
      policy: resolveFreshness(options, undefined),
    }
    this.userLayers = [...layers]
    this.layers =
      degradation === undefined
        ? this.userLayers
        : layers.map((layer) =>
            layer.local
              ? layer
              : new GuardedLayer(layer, degradation, (state) => this.circuitMoved(layer.name, state)),
          )
    const first = layers[0]!
    this.l1 = isLocalLayer(first) ? first : undefined
    this.sharedLayers = this.layers.filter((layer) => typeof layer.fenceSnapshot === 'function')
    const generation = readGenerationOption(options.generation)
    const cleanup = readCleanupOption(options.generationCleanup)
    if (cleanup !== undefined && generation === undefined) {
      throw new InvalidOptionError('generationCleanup needs the generation option')
    }
    const generationSource = this.layers.findIndex((layer) => typeof layer.sharedGeneration === 'function')
    this.generations =
      generation === undefined
        ? undefined
        : new Generations(generation, this.layers[generationSource], cleanup, {
            moved: (next, previous) => this.generationMoved(next, previous),
            // Reported like an entry the layer answered with but cannot use; the stack stays where it is.
            refused: (error) => this.corruptEntry(generationSource, error.key, error),
          })
    this.keyspace = this.generations?.prefix ?? ''
    this.keyVersions = new KeyVersions(this.layers.find((layer) => typeof layer.readCounter === 'function'))
    this.stats = new StatsCollector(this.layers.map((l) => l.name))
    this.gate = new WriteGate(this.layers, this.fence, this.flights, this.errorThrottle, {
      fenced: (full) => this.countFenced(full),
      failed: (i, operation, key, error, mode) => this.layerFailed(i, operation, key, error, mode),
      skipped: (writes) => {
        this.stats.skippedWrites += writes
      },
      backfilled: (full, from, to, ttl) => {
        this.stats.backfills++
        if (this.events.listening('backfill')) {
          this.events.emit('backfill', { key: full, from: from.name, to: to.name, ttl })
        }
      },
    })
    this.reads = new ReadThrough(this)
    this.loads = new LoadRunner(this)
    this.expiry = new SoftExpiry(this)
    const bus = readBusOption(options.invalidationBus)
    if (options.broadcastL1Invalidation !== undefined && typeof options.broadcastL1Invalidation !== 'boolean')
      throw new InvalidOptionError('broadcastL1Invalidation must be a boolean')
    if (options.broadcastL1Invalidation === true && bus === undefined)
      throw new InvalidOptionError('broadcastL1Invalidation needs the invalidationBus option')
    this.bus =
      bus === undefined ? undefined : new BusLink(bus, this, options.broadcastL1Invalidation === true)
  }

  /**
   * Whether an invalidation must look for dependents: this process wrote a `dependsOn`, or a shared layer
   * says some instance did (remembered once seen: the mark is never removed).
   */
  async dependentsPossible(): Promise<boolean> {
    if (this.dependenciesUsed || this.dependenciesSeen) return true
    const layers = this.sharedLayers.filter((layer) => layer.dependenciesMarked !== undefined)
    // A layer that cannot answer may have dependents: cascading is the safe side.
    const answers = await Promise.all(layers.map((layer) => layer.dependenciesMarked!().catch(() => true)))
    this.dependenciesSeen = answers.some(Boolean)
    return this.dependenciesSeen
  }

  /** Records in the shared layers that entries with `dependsOn` exist (before such a write or load). */
  markDependencies(): Promise<unknown> {
    this.dependenciesUsed = true
    return Promise.all(this.sharedLayers.map((layer) => layer.markDependencies?.()))
  }

  /** Everything of the previous generation is unreachable now: free memory and stop work in flight. */
  private generationMoved(next: number, previous: number): void {
    this.keyspace = this.generations!.prefix
    this.forgetLocalMemory()
    if (this.events.listening('generation')) this.events.emit('generation', { generation: next, previous })
    this.warmers.invalidatedAll()
  }

  /** Nothing in process memory can be trusted any more: empty the in-process layers, fence work in flight. */
  forgetLocalMemory(): void {
    this.gate.forgetAll(true)
  }

  /** What close() does to this stack's parts (see Lifecycle.close). */
  closingSteps(): ClosingSteps {
    return {
      stopWarmers: () => this.warmers.stop(),
      forgetMemory: (fence) => {
        if (fence) this.gate.forgetAll(true)
        else for (const layer of this.layers) if (isLocalLayer(layer)) layer.clear()
      },
      closeDistribution: async () => {
        // Both are stopped whatever the other does; a failure is reported, closing goes on.
        const closing = [
          ['invalidationBus', () => this.bus?.close()],
          ['singleFlightCoordinator', () => this.coordinator?.close?.()],
        ] as const
        await Promise.all(
          closing.map(async ([part, close]) => {
            try {
              await close()
            } catch (error) {
              this.stats.errors++
              if (this.events.listening('error')) {
                this.events.emit('error', { operation: 'close', layer: part, error, handled: true })
              }
            }
          }),
        )
      },
    }
  }

  /** Keys an invalidation removed (as stored): refill the ones with a warmer. */
  invalidated(fullKeys: Iterable<string>): void {
    this.warmers.invalidated(fullKeys, this.keyspace)
  }

  private warmerRan(key: string, outcome: Promise<unknown>): void {
    outcome.then(
      () => {
        this.stats.rewarmed++
        if (this.events.listening('rewarm')) this.events.emit('rewarm', { key })
      },
      (error: unknown) => {
        if (this.events.listening('rewarm')) this.events.emit('rewarm', { key, error })
      },
    )
  }

  countHit(layerIndex: number, full: string): void {
    this.stats.hits++
    this.stats.layerHits[layerIndex]!++
    if (this.events.listening('hit')) {
      this.events.emit('hit', { key: full, layer: this.layers[layerIndex]!.name, layerIndex })
    }
  }

  /** What a read of `entry` answers: its value, or undefined for a cached "absent". */
  answerOf(entry: CacheEntry): unknown {
    if (entry.absent === undefined) return entry.value
    this.stats.negativeHits++
    return entry.absent ? undefined : entry.value
  }

  countMiss(full: string): void {
    this.stats.misses++
    if (this.events.listening('miss')) this.events.emit('miss', { key: full })
  }

  /**
   * Counts and emits an entry `layerIndex` answered with but could not use. The read goes on as a miss
   * whatever the error mode (the layer answered); the caller books that miss as any other.
   */
  corruptEntry(layerIndex: number, full: string, error: CorruptEntryError): void {
    this.stats.corruptEntries++
    if (this.events.listening('corruptEntry')) {
      const layer = this.layers[layerIndex]!.name
      this.events.emit('corruptEntry', { key: full, layer, reason: error.reason, error })
    }
  }

  /** A cached value a read's schema refused: a miss of that read, counted and emitted. */
  schemaMismatch(full: string, issues: readonly unknown[]): void {
    this.stats.schemaMismatches++
    this.countMiss(full)
    if (this.events.listening('schemaMismatch')) this.events.emit('schemaMismatch', { key: full, issues })
  }

  /** Records a layer failure; rethrows it as a typed error unless the caller chose to bypass the layer. */
  layerFailed(
    layerIndex: number,
    operation: string,
    key: string | undefined,
    error: unknown,
    mode: LayerErrorMode,
  ): void {
    const layer = this.layers[layerIndex]!
    this.stats.errors++
    this.stats.layerErrors[layerIndex]!++
    const handled = mode === 'bypass'
    if (this.events.listening('error')) {
      this.events.emit('error', { operation, layer: layer.name, key, error, handled })
    }
    if (!handled) throw asUnavailable(layer.name, operation, error)
  }

  private circuitMoved(layer: string, state: CircuitState): void {
    if (state === 'open') this.stats.circuitOpens++
    if (channels.circuit.hasSubscribers) {
      channels.circuit.publish({ cache: this.name, layer, state } satisfies CircuitMessage)
    }
    if (this.events.listening('circuit')) this.events.emit('circuit', { layer, state })
  }

  countFenced(full: string): void {
    this.stats.fencedWrites++
    if (this.events.listening('fenced')) this.events.emit('fenced', { key: full })
  }

  countStale(full: string, reason: 'revalidate' | 'error' | 'timeout'): void {
    const stats = this.stats
    stats.staleServed++
    if (reason === 'error') stats.staleOnError++
    else if (reason === 'timeout') stats.staleOnTimeout++
    if (this.events.listening('stale')) this.events.emit('stale', { key: full, reason })
  }

  countRefresh(full: string, verdict: 'ahead' | 'early' | 'revalidate'): void {
    this.stats.backgroundRefreshes++
    if (this.events.listening('refresh')) {
      this.events.emit('refresh', { key: full, reason: verdict === 'revalidate' ? 'stale' : verdict })
    }
  }
}

function readNameOption(name: unknown): string {
  if (name === undefined) return 'default'
  if (typeof name !== 'string' || name.length === 0 || name.length > 200) {
    throw new InvalidOptionError('CacheStack name must be a non-empty string of at most 200 characters')
  }
  return name
}
