import { type CacheEntry, createEntry, remainingTtl } from './entry'
import { InvalidOptionError, LayerCacheError, LayerUnavailableError } from './errors'
import { type CacheEventListener, type CacheEventName, CacheEvents } from './events'
import { InvalidationFence } from './invalidation-fence'
import {
  type CacheLayer,
  type CommitWrite,
  isLocalLayer,
  type LayerWrite,
  type LocalCacheLayer,
} from './layer'
import { type CacheStats, StatsCollector } from './stats'
import {
  assertCacheableValue,
  assertKey,
  assertKnownOptions,
  assertOneOf,
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

export interface CacheStackOptions {
  /** Default entry lifetime in ms when a call gives none; each layer still caps it with its own ttl. */
  readonly ttl?: number
  /** Default reaction to a failing remote layer. Default `throw`. */
  readonly onLayerError?: LayerErrorMode
}
const STACK_OPTIONS = ['ttl', 'onLayerError'] as const

export interface SetOptions {
  /** Lifetime in ms; defaults to the stack's ttl, then to each layer's own. */
  readonly ttl?: number
  /** Labels for group invalidation; stored with the entry. */
  readonly tags?: readonly string[]
}
const SET_OPTIONS = ['ttl', 'tags'] as const

export interface GetOrSetOptions extends SetOptions {
  readonly onLayerError?: LayerErrorMode
}
const GET_OR_SET_OPTIONS = ['ttl', 'tags', 'onLayerError'] as const

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
const WRAP_OPTIONS = ['ttl', 'tags', 'onLayerError', 'keyResolver'] as const

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
      if (hit !== undefined) return Promise.resolve(hit.value as T)
      assertKey(key)
    } catch (error) {
      return Promise.reject(error)
    }
    return this.readThrough(full, state.l1 === undefined ? 0 : 1, mode) as Promise<T | undefined>
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
          if (entry === undefined) {
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
    return found.map((entry) => entry?.value as T | undefined)
  }

  /**
   * Returns the cached value, or runs `loader` once for all concurrent callers of the same key,
   * caches its result in every layer and returns it. A loader error reaches every waiter and caches
   * nothing; `undefined` from the loader is returned but not cached.
   */
  async getOrSet<T>(key: string, loader: () => T | Promise<T>, options?: GetOrSetOptions): Promise<T> {
    const full = this.prefix + hitPathKey(key)
    if (typeof loader !== 'function') throw new InvalidOptionError('getOrSet: loader must be a function')
    let ttl: number | undefined
    let tags: readonly string[] | undefined
    if (options !== undefined) {
      assertKnownOptions(options, GET_OR_SET_OPTIONS, 'getOrSet')
      ttl = assertTtl(options.ttl)
      tags = assertTags(options.tags)
    }
    const state = this.state
    const mode = this.errorMode(options)
    const l1 = state.l1
    const hit = this.memoryHit(full)
    if (hit !== undefined) return hit.value as T
    assertKey(key)
    ttl ??= state.defaultTtl

    const inFlight = state.flights.get(full)
    if (inFlight !== undefined) {
      state.stats.coalesced++
      if (state.events.listening('coalesced')) state.events.emit('coalesced', { key: full })
      return inFlight as Promise<T>
    }
    const flight = this.loadThrough(full, l1 === undefined ? 0 : 1, loader, ttl, tags, mode)
    state.flights.set(full, flight)
    const forget = () => {
      // An invalidation may have detached this flight and a newer one may own the key now.
      if (state.flights.get(full) === flight) state.flights.delete(full)
    }
    flight.then(forget, forget)
    return flight
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
    assertTtl(loadOptions.ttl)
    assertTags(loadOptions.tags)
    assertOneOf(loadOptions.onLayerError, LAYER_ERROR_MODES, 'onLayerError')
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
    if (entry === undefined) {
      state.stats.layerMisses[0]!++
      return undefined
    }
    state.stats.hits++
    state.stats.layerHits[0]!++
    if (state.events.listening('hit')) state.events.emit('hit', { key: full, layer: l1.name, layerIndex: 0 })
    return entry
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
   * Reads layers from `from` down and returns the first live value (back-filling the layers above it),
   * or undefined after counting a miss. Cached values are never undefined, so undefined means "absent".
   */
  private readThrough(full: string, from: number, mode: LayerErrorMode): Promise<unknown> {
    return from === this.state.layers.length - 1
      ? this.readLastLayer(full, from, mode)
      : this.readLayers(full, from, mode)
  }

  /** The common case (L1 missed, one layer left): one promise reaction instead of an async frame. */
  private readLastLayer(full: string, index: number, mode: LayerErrorMode): Promise<unknown> {
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
          const value = this.acceptRead(full, index, entry, ticket)
          if (value === undefined) this.countMiss(full)
          return value
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

  private async readLayers(full: string, from: number, mode: LayerErrorMode): Promise<unknown> {
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
        const value = this.acceptRead(full, i, entry, ticket)
        if (value !== undefined) return value
      }
      this.countMiss(full)
      return undefined
    } finally {
      state.fence.end()
    }
  }

  /**
   * Books a layer's answer: on a live entry counts the hit, back-fills the layers above and returns the
   * value; otherwise counts that layer's miss and returns undefined.
   */
  private acceptRead(full: string, index: number, entry: CacheEntry | undefined, ticket: number): unknown {
    const state = this.state
    if (entry === undefined) {
      state.stats.layerMisses[index]!++
      return undefined
    }
    state.stats.hits++
    state.stats.layerHits[index]!++
    if (state.events.listening('hit')) {
      state.events.emit('hit', { key: full, layer: state.layers[index]!.name, layerIndex: index })
    }
    if (index > 0) this.backfill(full, entry, index, ticket)
    return entry.value
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

  private async loadThrough<T>(
    full: string,
    from: number,
    loader: () => T | Promise<T>,
    ttl: number | undefined,
    tags: readonly string[] | undefined,
    mode: LayerErrorMode,
  ): Promise<T> {
    const state = this.state
    const ticket = state.fence.begin()
    try {
      const cached = await this.readThrough(full, from, mode)
      if (cached !== undefined) return cached as T
      const value = await this.runLoader(full, loader)
      if (value === undefined) return value
      if (state.fence.isFenced(full, ticket)) {
        this.countFenced(full)
        return value
      }
      const entry = createEntry(value, ttl, tags)
      const stillValid = () => !state.fence.isFenced(full, ticket)
      const writes = [{ key: full, entry, options: { ttl, stillValid } }]
      await this.commitEverywhere(this.prepareEverywhere(writes), writes, 'bypass')
      // Hand every waiter what the fastest layer now holds (e.g. the frozen copy), so a hit and a load
      // return values with the same protection.
      return (state.l1?.get(full)?.value as T | undefined) ?? value
    } finally {
      state.fence.end()
    }
  }

  private async runLoader<T>(full: string, loader: () => T | Promise<T>): Promise<T> {
    const state = this.state
    state.stats.loaderCalls++
    const timed = state.events.listening('load')
    const started = timed ? performance.now() : 0
    try {
      const value = await loader()
      if (timed) state.events.emit('load', { key: full, durationMs: performance.now() - started })
      return value
    } catch (error) {
      state.stats.loaderErrors++
      if (timed) state.events.emit('load', { key: full, durationMs: performance.now() - started, error })
      throw error
    }
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
    const writes: LayerWrite[] = items.map(({ key, value, ttl, tags }) => ({
      key,
      entry: createEntry(value, ttl, tags),
      options: { ttl, stillValid: () => !state.fence.isFenced(key, ticket) },
    }))
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
