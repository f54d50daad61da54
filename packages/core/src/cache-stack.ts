import { type CacheEntry, createEntry, isFresh, remainingTtl } from './entry'
import { ErrorThrottle } from './error-throttle'
import { InvalidOptionError, LayerCacheError, LayerUnavailableError, LoaderTimeoutError } from './errors'
import { type CacheEventListener, type CacheEventName, CacheEvents } from './events'
import {
  FRESHNESS_OPTIONS,
  type FreshnessOptions,
  type FreshnessPolicy,
  jittered,
  judge,
  resolveFreshness,
  storedTtl,
  usableOnError,
} from './freshness'
import { InvalidationFence } from './invalidation-fence'
import {
  type CacheLayer,
  type CommitWrite,
  isLocalLayer,
  type LayerWrite,
  type LocalCacheLayer,
} from './layer'
import { LoadContext, type LoaderContext } from './loader-context'
import { type CacheStats, StatsCollector } from './stats'
import {
  assertCacheableValue,
  assertKey,
  assertKnownOptions,
  assertOneOf,
  assertPositiveInteger,
  assertTags,
  assertTtl,
  MAX_KEY_LENGTH,
} from './validation'

/**
 * What to do when a remote layer fails (down, timed out):
 * - `throw`: reject with a LayerUnavailableError (fail fast; never hang).
 * - `bypass`: treat the layer as a miss, run the loader, skip writes to it, count and emit the error.
 * Deletes always reject on failure: an invalidation that did not reach Redis must not look done.
 */
export type LayerErrorMode = 'throw' | 'bypass'
const LAYER_ERROR_MODES: readonly LayerErrorMode[] = ['throw', 'bypass']

export interface CacheStackOptions extends FreshnessOptions {
  /** Default entry lifetime in ms when a call gives none; each layer still caps it with its own ttl. */
  readonly ttl?: number
  /** Default reaction to a failing remote layer. Default `throw`. */
  readonly onLayerError?: LayerErrorMode
}
const STACK_OPTIONS = ['ttl', 'onLayerError', ...FRESHNESS_OPTIONS] as const

export interface SetOptions {
  /** Lifetime in ms; defaults to the stack's ttl, then to each layer's own. */
  readonly ttl?: number
  /** Labels for group invalidation; stored with the entry. */
  readonly tags?: readonly string[]
}
const SET_OPTIONS = ['ttl', 'tags'] as const

export interface GetOrSetOptions extends SetOptions, FreshnessOptions {
  readonly onLayerError?: LayerErrorMode
}
const GET_OR_SET_OPTIONS = ['ttl', 'tags', 'onLayerError', ...FRESHNESS_OPTIONS] as const

/** Produces the value for a missing or stale key. The context offers the stale value, an abort signal and more. */
export type Loader<T> = (context: LoaderContext<T>) => T | Promise<T>

export interface WarmEntry<T = unknown> {
  readonly key: string
  readonly loader: Loader<T>
  readonly options?: GetOrSetOptions
}

export interface WarmOptions {
  /** Loads running at once. Default 4. */
  readonly concurrency?: number
  /** Reload keys that are already cached (default: only missing or stale ones). */
  readonly force?: boolean
}

export interface WarmResult {
  readonly total: number
  /** Keys whose loader ran (the rest were already cached). */
  readonly loaded: number
  readonly failed: readonly { readonly key: string; readonly error: unknown }[]
}

/** A getOrSet call's resolved options. */
interface LoadPlan {
  readonly ttl: number | undefined
  readonly tags: readonly string[] | undefined
  readonly mode: LayerErrorMode
  readonly policy: FreshnessPolicy
}

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

export interface ReadOptions {
  readonly onLayerError?: LayerErrorMode
}
const READ_OPTIONS = ['onLayerError'] as const

export interface MsetEntry<T = unknown> extends SetOptions {
  readonly key: string
  readonly value: T
}

export interface WrapOptions<A extends unknown[]> extends GetOrSetOptions {
  /** Builds the key suffix from the call's arguments; default `JSON.stringify(args)`. */
  readonly keyResolver?: (...args: A) => string
}
const WRAP_OPTIONS = ['keyResolver', ...GET_OR_SET_OPTIONS] as const

/** The state shared by a stack and every namespace view of it. */
class StackState {
  readonly layers: readonly CacheLayer[]
  /** The first layer when it is in-process: the hot path reads it without an await. */
  readonly l1: LocalCacheLayer | undefined
  readonly stats: StatsCollector
  readonly events = new CacheEvents()
  readonly fence = new InvalidationFence()
  readonly flights = new Map<string, Promise<unknown>>()
  readonly defaultTtl: number | undefined
  readonly onLayerError: LayerErrorMode
  readonly freshnessDefaults: FreshnessOptions
  /** The plan of a getOrSet without options (resolved once). */
  readonly defaultPlan: LoadPlan
  readonly errorThrottle = new ErrorThrottle()

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
    this.defaultTtl = assertTtl(options.ttl, 'CacheStack ttl')
    this.onLayerError = assertOneOf(options.onLayerError, LAYER_ERROR_MODES, 'onLayerError') ?? 'throw'
    this.freshnessDefaults = options
    this.defaultPlan = {
      ttl: this.defaultTtl,
      tags: undefined,
      mode: this.onLayerError,
      policy: resolveFreshness(options, undefined),
    }
    this.layers = [...layers]
    const first = layers[0]!
    this.l1 = isLocalLayer(first) ? first : undefined
    this.stats = new StatsCollector(this.layers.map((l) => l.name))
  }
}

/**
 * The part of key validation a memory hit needs: type and length. The control-character scan runs only
 * after a miss, which is safe because no key holding one is ever stored, so such a key cannot hit.
 */
function hitPathKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) return assertKey(key)
  return key
}

function normalizeNamespace(prefix: unknown): string {
  const name = assertKey(prefix, 'namespace')
  return name.endsWith(':') ? name : `${name}:`
}

function asLayerError(layer: CacheLayer, operation: string, error: unknown): LayerCacheError {
  if (error instanceof LayerCacheError) return error
  const reason = error instanceof Error ? error.message : String(error)
  return new LayerUnavailableError(layer.name, `${layer.name}: ${operation} failed: ${reason}`, error)
}

/**
 * A stack of cache layers, fastest first (typically MemoryLayer over RedisLayer).
 * Reads stop at the first layer that has the key and copy it into the faster layers above;
 * writes go to every layer. `namespace(prefix)` returns a view with the same API over the same layers.
 */
export class CacheStack {
  private readonly state: StackState
  private readonly prefix: string

  constructor(layers: readonly CacheLayer[], options: CacheStackOptions = {}) {
    this.state = new StackState(layers, options)
    this.prefix = ''
  }

  /** A view whose keys all live under `prefix:`; nest freely. Shares layers, stats and events. */
  namespace(prefix: string): CacheStack {
    const view = Object.create(CacheStack.prototype) as CacheStack
    Object.assign(view, { state: this.state, prefix: this.prefix + normalizeNamespace(prefix) })
    return view
  }

  /** The key prefix of this view ('' for the root stack). */
  get keyPrefix(): string {
    return this.prefix
  }

  get layers(): readonly CacheLayer[] {
    return this.state.layers
  }

  // Not `async`: a miss hands back the read-through's own promise instead of wrapping it in another.
  get<T = unknown>(key: string, options?: ReadOptions): Promise<T | undefined> {
    const state = this.state
    let full: string
    let mode = state.onLayerError
    try {
      full = this.prefix + hitPathKey(key)
      if (options !== undefined) {
        assertKnownOptions(options, READ_OPTIONS, 'get')
        mode = this.errorMode(options)
      }
      const hit = this.memoryHit(full)
      if (hit !== undefined) return Promise.resolve(this.answerOf(hit) as T)
      assertKey(key)
    } catch (error) {
      return Promise.reject(error)
    }
    return this.readThrough(full, state.l1 === undefined ? 0 : 1, mode, false) as Promise<T | undefined>
  }

  async has(key: string, options?: ReadOptions): Promise<boolean> {
    const full = this.prefix + assertKey(key)
    assertKnownOptions(options, READ_OPTIONS, 'has')
    const mode = this.errorMode(options)
    const layers = this.state.layers
    for (let i = 0; i < layers.length; i++) {
      const layer = layers[i]!
      try {
        if (await layer.has(full)) return true
      } catch (error) {
        this.layerFailed(i, 'has', full, error, mode)
      }
    }
    return false
  }

  async set<T>(key: string, value: T, options?: SetOptions): Promise<void> {
    const full = this.prefix + assertKey(key)
    assertKnownOptions(options, SET_OPTIONS, 'set')
    const ttl = assertTtl(options?.ttl) ?? this.state.defaultTtl
    const tags = assertTags(options?.tags)
    assertCacheableValue(value, key)
    await this.writeNewValues([{ key: full, value, ttl, tags }])
  }

  async mset<T>(entries: readonly MsetEntry<T>[]): Promise<void> {
    if (!Array.isArray(entries))
      throw new InvalidOptionError('mset expects an array of { key, value, ttl?, tags? }')
    // Validate everything before touching any layer: a rejected call changes nothing.
    const items = entries.map((item) => {
      assertKnownOptions(item, ['key', 'value', 'ttl', 'tags'], 'mset entry')
      const key = this.prefix + assertKey(item.key)
      const ttl = assertTtl(item.ttl) ?? this.state.defaultTtl
      const tags = assertTags(item.tags)
      assertCacheableValue(item.value, item.key)
      return { key, value: item.value as unknown, ttl, tags }
    })
    await this.writeNewValues(items)
  }

  async delete(key: string): Promise<void> {
    await this.deleteFull([this.prefix + assertKey(key)])
  }

  async mdelete(keys: readonly string[]): Promise<void> {
    if (!Array.isArray(keys)) throw new InvalidOptionError('mdelete expects an array of keys')
    await this.deleteFull(keys.map((key) => this.prefix + assertKey(key)))
  }

  async mget<T = unknown>(keys: readonly string[], options?: ReadOptions): Promise<(T | undefined)[]> {
    if (!Array.isArray(keys)) throw new InvalidOptionError('mget expects an array of keys')
    const fulls = keys.map((key) => this.prefix + assertKey(key))
    assertKnownOptions(options, READ_OPTIONS, 'mget')
    const mode = this.errorMode(options)
    const state = this.state
    const { layers, stats } = state
    // Filled, not sparse: callers map/filter the result and holes would be skipped.
    const found: (CacheEntry | undefined)[] = new Array(fulls.length).fill(undefined)
    let pending = fulls.map((_, i) => i)
    const ticket = state.fence.begin()
    try {
      for (let li = 0; li < layers.length && pending.length > 0; li++) {
        const layer = layers[li]!
        let entries: (CacheEntry | undefined)[]
        try {
          entries = await layer.getMany(pending.map((i) => fulls[i]!))
        } catch (error) {
          this.layerFailed(li, 'getMany', undefined, error, mode)
          continue
        }
        const stillMissing: number[] = []
        const backfills: { key: string; entry: CacheEntry }[] = []
        entries.forEach((entry, j) => {
          const index = pending[j]!
          if (entry === undefined || (entry.freshUntil !== undefined && !isFresh(entry))) {
            stats.layerMisses[li]!++
            stillMissing.push(index)
            return
          }
          stats.layerHits[li]!++
          stats.hits++
          if (state.events.listening('hit')) {
            state.events.emit('hit', { key: fulls[index]!, layer: layer.name, layerIndex: li })
          }
          found[index] = entry
          if (li > 0) backfills.push({ key: fulls[index]!, entry })
        })
        for (const { key, entry } of backfills) this.backfill(key, entry, li, ticket)
        pending = stillMissing
      }
    } finally {
      state.fence.end()
    }
    for (const index of pending) this.countMiss(fulls[index]!)
    return found.map((entry) => (entry === undefined ? undefined : (this.answerOf(entry) as T | undefined)))
  }

  /**
   * Returns the cached value, or runs `loader` once for all concurrent callers of the same key, caches
   * its result in every layer and returns it. A loader error reaches every waiter and caches nothing;
   * `undefined` from the loader is returned but not cached (unless `negativeTtl` says otherwise).
   * Freshness options (stale-while-revalidate, stale-if-error, timeouts, early refresh) apply here.
   */
  async getOrSet<T>(key: string, loader: Loader<T>, options?: GetOrSetOptions): Promise<T> {
    const full = this.prefix + hitPathKey(key)
    if (typeof loader !== 'function') throw new InvalidOptionError('getOrSet: loader must be a function')
    const state = this.state
    const plan =
      options === undefined ? state.defaultPlan : this.planOf(options, GET_OR_SET_OPTIONS, 'getOrSet')
    const l1 = state.l1
    let fallback: CacheEntry | undefined
    if (l1 !== undefined) {
      const entry = l1.get(full)
      if (entry === undefined) {
        state.stats.layerMisses[0]!++
      } else {
        const verdict = entry.freshUntil === undefined ? 'fresh' : judge(entry, plan.policy)
        if (verdict === 'fallback') {
          state.stats.layerMisses[0]!++
          fallback = entry
        } else {
          this.countHit(0, full)
          if (verdict !== 'fresh') this.refreshInBackground(full, key, loader, plan, entry, verdict)
          return this.answerOf(entry) as T
        }
      }
    }
    assertKey(key)
    const inFlight = state.flights.get(full)
    if (inFlight !== undefined) {
      state.stats.coalesced++
      if (state.events.listening('coalesced')) state.events.emit('coalesced', { key: full })
      return inFlight as Promise<T>
    }
    return this.startLoad(full, key, loader, plan, fallback, 'load')
  }

  /**
   * Runs `loader` now and caches its result, whatever the cache holds (single-flighted with any load of
   * the key in flight). For warmers and "this changed, recompute it" paths.
   */
  async refresh<T>(key: string, loader: Loader<T>, options?: GetOrSetOptions): Promise<T> {
    const full = this.prefix + assertKey(key)
    if (typeof loader !== 'function') throw new InvalidOptionError('refresh: loader must be a function')
    const plan =
      options === undefined ? this.state.defaultPlan : this.planOf(options, GET_OR_SET_OPTIONS, 'refresh')
    const inFlight = this.state.flights.get(full)
    if (inFlight !== undefined) return inFlight as Promise<T>
    // The cached value only informs the loader (ctx.stale); a failing refresh() rejects.
    return this.startLoad(full, key, loader, plan, this.state.l1?.get(full), 'force')
  }

  /**
   * Loads many keys with bounded concurrency (start-up warming, re-filling critical keys). Emits a `warm`
   * event per key. Keys already cached are skipped unless `force`. Never rejects for a loader's error:
   * failures are reported in the result.
   */
  async warm(entries: readonly WarmEntry[], options: WarmOptions = {}): Promise<WarmResult> {
    if (!Array.isArray(entries))
      throw new InvalidOptionError('warm expects an array of { key, loader, options? }')
    assertKnownOptions(options, ['concurrency', 'force'], 'warm')
    const concurrency = assertPositiveInteger(options.concurrency, 'warm concurrency') ?? 4
    for (const entry of entries) {
      assertKnownOptions(entry, ['key', 'loader', 'options'], 'warm entry')
      assertKey(entry.key)
      if (typeof entry.loader !== 'function')
        throw new InvalidOptionError(`warm: loader of "${entry.key}" is not a function`)
      if (entry.options !== undefined) this.planOf(entry.options, GET_OR_SET_OPTIONS, 'warm entry options')
    }
    const state = this.state
    const failed: { key: string; error: unknown }[] = []
    let loaded = 0
    let done = 0
    let next = 0
    const worker = async () => {
      while (next < entries.length) {
        const { key, loader, options: loadOptions } = entries[next++]!
        const counted: Loader<unknown> = (context) => {
          loaded++
          return loader(context)
        }
        let error: unknown
        try {
          await (options.force
            ? this.refresh(key, counted, loadOptions)
            : this.getOrSet(key, counted, loadOptions))
        } catch (caught) {
          error = caught
          failed.push({ key, error })
        }
        done++
        if (state.events.listening('warm')) {
          state.events.emit('warm', { key: this.prefix + key, done, total: entries.length, error })
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, entries.length) }, worker))
    state.stats.warmed += loaded
    return { total: entries.length, loaded, failed }
  }

  /**
   * Wraps `fn` so calls are cached under `prefix:` + a key built from the arguments
   * (default: JSON of the arguments; pass `keyResolver` when that is not stable or unique).
   */
  wrap<A extends unknown[], R>(
    prefix: string,
    fn: (...args: A) => R | Promise<R>,
    options: WrapOptions<A> = {},
  ): (...args: A) => Promise<Awaited<R>> {
    assertKey(prefix, 'wrap prefix')
    if (typeof fn !== 'function') throw new InvalidOptionError('wrap: fn must be a function')
    assertKnownOptions(options, WRAP_OPTIONS, 'wrap')
    const { keyResolver, ...loadOptions } = options
    if (keyResolver !== undefined && typeof keyResolver !== 'function') {
      throw new InvalidOptionError('wrap: keyResolver must be a function')
    }
    this.planOf(loadOptions, GET_OR_SET_OPTIONS, 'wrap')
    return async (...args: A): Promise<Awaited<R>> => {
      const suffix = keyResolver ? keyResolver(...args) : JSON.stringify(args)
      return this.getOrSet(`${prefix}:${suffix}`, () => fn(...args), loadOptions) as Promise<Awaited<R>>
    }
  }

  on<K extends CacheEventName>(name: K, listener: CacheEventListener<K>): () => void {
    return this.state.events.on(name, listener)
  }

  off<K extends CacheEventName>(name: K, listener: CacheEventListener<K>): void {
    this.state.events.off(name, listener)
  }

  /** Counters for the whole stack (shared by every namespace view). */
  getStats(): CacheStats {
    return this.state.stats.snapshot()
  }

  resetStats(): void {
    this.state.stats.reset()
  }

  /** The hot path: an in-process first layer answers synchronously, and is counted either way. */
  private memoryHit(full: string): CacheEntry | undefined {
    const state = this.state
    const l1 = state.l1
    if (l1 === undefined) return undefined
    const entry = l1.get(full)
    if (entry === undefined || (entry.freshUntil !== undefined && !isFresh(entry))) {
      state.stats.layerMisses[0]!++
      return undefined
    }
    this.countHit(0, full)
    return entry
  }

  private countHit(layerIndex: number, full: string): void {
    const state = this.state
    state.stats.hits++
    state.stats.layerHits[layerIndex]!++
    if (state.events.listening('hit')) {
      state.events.emit('hit', { key: full, layer: state.layers[layerIndex]!.name, layerIndex })
    }
  }

  /** What a read of `entry` answers: its value, or undefined for a cached "absent". */
  private answerOf(entry: CacheEntry): unknown {
    if (entry.absent !== true) return entry.value
    this.state.stats.negativeHits++
    return undefined
  }

  /** Validates a call's options and merges them over the stack's defaults. */
  private planOf(options: GetOrSetOptions, allowed: readonly string[], where: string): LoadPlan {
    assertKnownOptions(options, allowed, where)
    const state = this.state
    return {
      ttl: assertTtl(options.ttl) ?? state.defaultTtl,
      tags: assertTags(options.tags),
      mode: this.errorMode(options),
      policy: resolveFreshness(state.freshnessDefaults, options),
    }
  }

  private errorMode(options: ReadOptions | undefined): LayerErrorMode {
    const mode = options?.onLayerError
    return mode === undefined
      ? this.state.onLayerError
      : assertOneOf(mode, LAYER_ERROR_MODES, 'onLayerError')!
  }

  private countMiss(full: string): void {
    const state = this.state
    state.stats.misses++
    if (state.events.listening('miss')) state.events.emit('miss', { key: full })
  }

  /** Records a layer failure; rethrows it as a typed error unless the caller chose to bypass the layer. */
  private layerFailed(
    layerIndex: number,
    operation: string,
    key: string | undefined,
    error: unknown,
    mode: LayerErrorMode,
  ): void {
    const state = this.state
    const layer = state.layers[layerIndex]!
    state.stats.errors++
    state.stats.layerErrors[layerIndex]!++
    const handled = mode === 'bypass'
    if (state.events.listening('error')) {
      state.events.emit('error', { operation, layer: layer.name, key, error, handled })
    }
    if (!handled) throw asLayerError(layer, operation, error)
  }

  /**
   * Reads layers from `from` down and books the first answer (back-filling the layers above it), or
   * counts a miss. `get` wants the answer's value and only fresh entries; a load wants the entry itself,
   * stale or not, to judge it. Cached values are never undefined, so undefined means "nothing usable".
   */
  private readThrough(full: string, from: number, mode: LayerErrorMode, asEntry: false): Promise<unknown>
  private readThrough(
    full: string,
    from: number,
    mode: LayerErrorMode,
    asEntry: true,
  ): Promise<CacheEntry | undefined>
  private readThrough(full: string, from: number, mode: LayerErrorMode, asEntry: boolean): Promise<unknown> {
    return from === this.state.layers.length - 1
      ? this.readLastLayer(full, from, mode, asEntry)
      : this.readLayers(full, from, mode, asEntry)
  }

  /** The common case (L1 missed, one layer left): one promise reaction instead of an async frame. */
  private readLastLayer(
    full: string,
    index: number,
    mode: LayerErrorMode,
    asEntry: boolean,
  ): Promise<unknown> {
    const fence = this.state.fence
    const ticket = fence.begin()
    let reply: Promise<CacheEntry | undefined> | CacheEntry | undefined
    try {
      reply = this.state.layers[index]!.get(full)
    } catch (error) {
      reply = Promise.reject(error)
    }
    return Promise.resolve(reply).then(
      (entry) => {
        try {
          const found = this.acceptRead(full, index, entry, ticket, !asEntry)
          if (found === undefined) {
            this.countMiss(full)
            return undefined
          }
          return asEntry ? found : this.answerOf(found)
        } finally {
          fence.end()
        }
      },
      (error: unknown) => {
        fence.end()
        this.layerFailed(index, 'get', full, error, mode)
        this.countMiss(full)
        return undefined
      },
    )
  }

  private async readLayers(
    full: string,
    from: number,
    mode: LayerErrorMode,
    asEntry: boolean,
  ): Promise<unknown> {
    const state = this.state
    const layers = state.layers
    const ticket = state.fence.begin()
    try {
      for (let i = from; i < layers.length; i++) {
        let entry: CacheEntry | undefined
        try {
          entry = await layers[i]!.get(full)
        } catch (error) {
          this.layerFailed(i, 'get', full, error, mode)
          continue
        }
        const found = this.acceptRead(full, i, entry, ticket, !asEntry)
        if (found !== undefined) return asEntry ? found : this.answerOf(found)
      }
      this.countMiss(full)
      return undefined
    } finally {
      state.fence.end()
    }
  }

  /**
   * Books a layer's answer: a live entry (a fresh one when `freshOnly`) counts as a hit, back-fills the
   * layers above and is returned; anything else counts as that layer's miss.
   */
  private acceptRead(
    full: string,
    index: number,
    entry: CacheEntry | undefined,
    ticket: number,
    freshOnly: boolean,
  ): CacheEntry | undefined {
    if (entry === undefined || (freshOnly && entry.freshUntil !== undefined && !isFresh(entry))) {
      this.state.stats.layerMisses[index]!++
      return undefined
    }
    this.countHit(index, full)
    if (index > 0) this.backfill(full, entry, index, ticket)
    return entry
  }

  /** Copies a lower-layer hit into every faster layer with its remaining TTL, unless it was invalidated. */
  private backfill(full: string, entry: CacheEntry, foundAt: number, ticket: number): void {
    const state = this.state
    const ttl = remainingTtl(entry, Date.now())
    if (ttl === 0) return
    if (state.fence.isFenced(full, ticket)) {
      this.countFenced(full)
      return
    }
    const stillValid = () => !state.fence.isFenced(full, ticket)
    // A value from a remote layer was just decoded and is ours; one from an in-process layer may be the
    // very object a caller stored, which must not be frozen under them.
    const ownsValue = !isLocalLayer(state.layers[foundAt]!)
    const writes: LayerWrite[] = [{ key: full, entry, options: { ttl, ownsValue, stillValid } }]
    for (let i = 0; i < foundAt; i++) {
      const layer = state.layers[i]!
      state.stats.backfills++
      if (state.events.listening('backfill')) {
        state.events.emit('backfill', { key: full, from: state.layers[foundAt]!.name, to: layer.name, ttl })
      }
      try {
        const done = layer.prepareWrites(writes)()
        if (done instanceof Promise) {
          // Keep invalidations recorded until this write is out, or a delete landing meanwhile would be missed.
          state.fence.begin()
          done
            .catch((error) => this.layerFailed(i, 'backfill', full, error, 'bypass'))
            .finally(() => state.fence.end())
        }
      } catch (error) {
        this.layerFailed(i, 'backfill', full, error, 'bypass')
      }
    }
  }

  private countFenced(full: string): void {
    const state = this.state
    state.stats.fencedWrites++
    if (state.events.listening('fenced')) state.events.emit('fenced', { key: full })
  }

  /**
   * Starts a load of `full`, registered as the key's flight; the answer may come before the loader ends.
   * A background refresh answers at once with the value it refreshes, so callers that join it get that
   * value without waiting, and nothing it does later counts as a stale answer to anyone.
   */
  private startLoad<T>(
    full: string,
    key: string,
    loader: Loader<T>,
    plan: LoadPlan,
    current: CacheEntry | undefined,
    mode: 'load' | 'background' | 'force',
  ): Promise<T> {
    const state = this.state
    const answer = new Answer<T>()
    if (mode === 'background' && current !== undefined) {
      answer.resolve((current.absent === true ? undefined : current.value) as T)
    }
    state.flights.set(full, answer.promise)
    const detach = () => {
      // An invalidation may have detached this flight and a newer one may own the key now.
      if (state.flights.get(full) === answer.promise) state.flights.delete(full)
    }
    this.runLoad(full, key, loader, plan, current, mode === 'force', answer, detach).then(
      detach,
      (error: unknown) => {
        detach()
        answer.reject(error)
      },
    )
    return answer.promise
  }

  /** Serves `current` as it is and refreshes it in the background, once, unless a load is already running. */
  private refreshInBackground<T>(
    full: string,
    key: string,
    loader: Loader<T>,
    plan: LoadPlan,
    current: CacheEntry,
    verdict: 'ahead' | 'early' | 'revalidate',
  ): void {
    const state = this.state
    if (verdict === 'revalidate') this.countStale(full, 'revalidate')
    else state.stats.earlyRefreshes++
    // A refresh that just failed is not retried on every read: the same throttle as stale-if-error.
    if (state.flights.has(full) || state.errorThrottle.blocked(full)) return
    this.countRefresh(full, verdict)
    // Its outcome is in stats and events; nobody awaits it.
    this.startLoad(full, key, loader, plan, current, 'background').catch(() => {})
  }

  private countRefresh(full: string, verdict: 'ahead' | 'early' | 'revalidate'): void {
    const state = this.state
    state.stats.backgroundRefreshes++
    if (state.events.listening('refresh')) {
      state.events.emit('refresh', { key: full, reason: verdict === 'revalidate' ? 'stale' : verdict })
    }
  }

  /**
   * The load behind getOrSet: lower layers first (a fresh entry there ends it, unless it is due for an
   * early refresh), then the loader under the freshness policy. Settles `answer` exactly once, possibly
   * early (a stale or due-for-refresh value served) while the loader runs on to update the cache. A value
   * invalidated since the load began is never served as a fallback.
   */
  private async runLoad<T>(
    full: string,
    key: string,
    loader: Loader<T>,
    plan: LoadPlan,
    current: CacheEntry | undefined,
    force: boolean,
    answer: Answer<T>,
    detach: () => void,
  ): Promise<void> {
    const state = this.state
    const policy = plan.policy
    const ticket = state.fence.begin()
    let fallback = force ? undefined : current
    try {
      const from = state.l1 === undefined ? 0 : 1
      if (!force && from < state.layers.length) {
        const lower = await this.readThrough(full, from, plan.mode, true)
        // Another instance may already have refreshed it: a newer entry below wins over the one we hold.
        if (
          lower !== undefined &&
          (current === undefined || (lower.createdAt ?? 0) > (current.createdAt ?? 0))
        ) {
          const verdict = lower.freshUntil === undefined ? 'fresh' : judge(lower, policy)
          if (verdict === 'fresh') {
            answer.resolve(this.answerOf(lower) as T)
            return
          }
          if (verdict !== 'fallback') {
            // Served now and refreshed by this very load, as an L1 hit with this verdict would be.
            if (!answer.settled) {
              if (verdict === 'revalidate') this.countStale(full, 'revalidate')
              else state.stats.earlyRefreshes++
              this.countRefresh(full, verdict)
            }
            answer.resolve(this.answerOf(lower) as T)
          }
          fallback = lower
        }
      } else if (!force) {
        this.countMiss(full)
      }
      const stillValid = () => !state.fence.isFenced(full, ticket)
      const canFallBack = usableOnError(fallback, policy)
      if (canFallBack && state.errorThrottle.blocked(full)) {
        this.serveStale(answer, full, fallback!, 'error')
        return
      }
      const previous = fallback ?? current
      const context = new LoadContext<T>(
        key,
        previous === undefined || previous.absent === true ? undefined : (previous.value as T),
        plan.ttl,
        plan.tags,
      )
      let value: T
      const started = performance.now()
      try {
        const standIn = canFallBack ? fallback : undefined
        value = await this.callLoader(full, loader, context, policy, standIn, stillValid, answer)
      } catch (error) {
        if (error instanceof LoaderTimeoutError) detach()
        if (canFallBack || answer.settled) state.errorThrottle.failed(full, policy.errorRetryAfter)
        if (canFallBack && stillValid()) {
          this.serveStale(answer, full, fallback!, 'error')
          return
        }
        answer.reject(error)
        return
      }
      state.errorThrottle.forget(full)
      const written = await this.writeLoaded(
        full,
        value,
        context,
        policy,
        performance.now() - started,
        ticket,
      )
      // The protected copy the fastest layer now holds, so a load and a hit hand out the same kind of value.
      answer.resolve((written === undefined || written.absent === true ? value : written.value) as T)
    } finally {
      state.fence.end()
    }
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
          if (fallbackValid()) this.serveStale(answer, full, fallback, 'timeout')
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
   * unless the key was invalidated since the load began. Returns the entry as the fastest layer now
   * holds it (e.g. its frozen copy), or undefined when nothing was written.
   */
  private async writeLoaded<T>(
    full: string,
    value: T,
    context: LoadContext<T>,
    policy: FreshnessPolicy,
    loadMs: number,
    ticket: number,
  ): Promise<CacheEntry | undefined> {
    const state = this.state
    const nothing = value === undefined || value === null
    let built: { entry: CacheEntry; ttl: number | undefined }
    if (nothing && policy.negativeTtl !== undefined) {
      built = { entry: { value: null, expiresAt: 0, absent: value === undefined }, ttl: policy.negativeTtl }
    } else if (value === undefined || (policy.shouldCache !== undefined && !policy.shouldCache(value))) {
      state.stats.uncached++
      return undefined
    } else {
      built = this.buildEntry(value, context.ttl, context.tags, policy, loadMs)
    }
    if (state.fence.isFenced(full, ticket)) {
      this.countFenced(full)
      return undefined
    }
    const stillValid = () => !state.fence.isFenced(full, ticket)
    const writes = [{ key: full, entry: built.entry, options: { ttl: built.ttl, stillValid } }]
    await this.commitEverywhere(this.prepareEverywhere(writes), writes, 'bypass')
    return state.l1?.get(full) ?? built.entry
  }

  /**
   * The entry a write stores: with a freshness policy the value is fresh for the (jittered) TTL and kept
   * for the stale windows after it; without one it is a plain entry that lives for the TTL.
   */
  private buildEntry(
    value: unknown,
    ttl: number | undefined,
    tags: readonly string[] | undefined,
    policy: FreshnessPolicy,
    loadMs?: number,
  ): { entry: CacheEntry; ttl: number | undefined } {
    if (ttl === undefined) return { entry: createEntry(value, undefined, tags), ttl }
    const fresh = jittered(ttl, policy)
    if (!policy.active) return { entry: createEntry(value, fresh, tags), ttl: fresh }
    const now = Date.now()
    const stored = storedTtl(fresh, policy)
    return {
      entry: { value, expiresAt: now + stored, tags, freshUntil: now + fresh, createdAt: now, loadMs },
      ttl: stored,
    }
  }

  /** Answers with a stale entry standing in for a failed or slow load (a no-op once answered). */
  private serveStale<T>(answer: Answer<T>, full: string, entry: CacheEntry, reason: 'error' | 'timeout') {
    if (answer.settled) return
    this.countStale(full, reason)
    answer.resolve(this.answerOf(entry) as T)
  }

  private countStale(full: string, reason: 'revalidate' | 'error' | 'timeout'): void {
    const stats = this.state.stats
    stats.staleServed++
    if (reason === 'error') stats.staleOnError++
    else if (reason === 'timeout') stats.staleOnTimeout++
    if (this.state.events.listening('stale')) this.state.events.emit('stale', { key: full, reason })
  }

  /**
   * set/mset: every layer validates and encodes first (bad input throws here and changes nothing), then
   * the keys are invalidated for older in-flight work, and the writes are fenced against newer ones.
   */
  private async writeNewValues(
    items: readonly {
      key: string
      value: unknown
      ttl: number | undefined
      tags: readonly string[] | undefined
    }[],
  ): Promise<void> {
    const state = this.state
    let ticket = 0
    const policy = state.defaultPlan.policy
    const writes: LayerWrite[] = items.map(({ key, value, ttl, tags }) => {
      const built = this.buildEntry(value, ttl, tags, policy)
      return {
        key,
        entry: built.entry,
        options: { ttl: built.ttl, stillValid: () => !state.fence.isFenced(key, ticket) },
      }
    })
    const commits = this.prepareEverywhere(writes)
    for (const { key } of items) this.invalidateLocally(key)
    ticket = state.fence.begin()
    try {
      state.stats.sets += items.length
      await this.commitEverywhere(commits, writes, state.onLayerError)
    } finally {
      state.fence.end()
    }
    if (state.events.listening('set')) for (const { key } of items) state.events.emit('set', { key })
  }

  /** Fences in-flight reads and loads of `key` and detaches a load in flight so later callers start afresh. */
  private invalidateLocally(key: string): void {
    this.state.fence.invalidate(key)
    this.state.flights.delete(key)
    this.state.errorThrottle.forget(key)
  }

  private prepareEverywhere(writes: readonly LayerWrite[]): CommitWrite[] {
    return this.state.layers.map((layer) => layer.prepareWrites(writes))
  }

  /**
   * Phase two on every layer. On a remote failure in `throw` mode the written keys are removed from the
   * layers that took them (so this instance does not serve what Redis refused) and the error is thrown.
   */
  private async commitEverywhere(
    commits: readonly CommitWrite[],
    writes: readonly LayerWrite[],
    mode: LayerErrorMode,
  ) {
    const pending: Promise<void>[] = []
    const failures: { index: number; error: unknown }[] = []
    commits.forEach((commit, i) => {
      try {
        const done = commit()
        if (done instanceof Promise)
          pending.push(done.catch((error) => void failures.push({ index: i, error })))
      } catch (error) {
        failures.push({ index: i, error })
      }
    })
    if (pending.length > 0) await Promise.all(pending)
    if (failures.length === 0) return
    if (mode === 'throw') await this.removeQuietly(writes.map((w) => w.key))
    const operation = writes.length === 1 ? 'set' : 'setMany'
    for (const { index, error } of failures) this.layerFailed(index, operation, writes[0]?.key, error, mode)
  }

  private async removeQuietly(keys: readonly string[]): Promise<void> {
    await Promise.all(
      this.state.layers.map(async (layer) => {
        try {
          await layer.deleteMany(keys)
        } catch {
          // Best effort: the caller is about to get the original failure.
        }
      }),
    )
  }

  private async deleteFull(fulls: readonly string[]): Promise<void> {
    const state = this.state
    for (const full of fulls) this.invalidateLocally(full)
    state.stats.deletes += fulls.length
    const layers = state.layers
    let firstFailure: LayerCacheError | undefined
    await Promise.all(
      layers.map(async (layer, i) => {
        try {
          await (fulls.length === 1 ? layer.delete(fulls[0]!) : layer.deleteMany(fulls))
        } catch (error) {
          try {
            this.layerFailed(i, 'delete', fulls[0], error, 'throw')
          } catch (typed) {
            firstFailure ??= typed as LayerCacheError
          }
        }
      }),
    )
    if (firstFailure) throw firstFailure
    if (state.events.listening('delete')) for (const key of fulls) state.events.emit('delete', { key })
  }
}
