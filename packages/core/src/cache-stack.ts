import { BatchLoad, type BatchLoader } from './batch-load'
import { readSignal, unlessAborted } from './cancellation'
import {
  type CacheOperationContext,
  channels,
  type InvalidationContext,
  observe,
  observed,
} from './diagnostics'
import { type CacheEntry, isFresh } from './entry'
import { InvalidOptionError } from './errors'
import type { CacheEventListener, CacheEventMap, CacheEventName } from './events'
import { buildEntry, FRESHNESS_OPTIONS, type FreshnessOptions, judge, resolveFreshness } from './freshness'
import { GuardedLayer } from './guarded-layer'
import { type TagMatchMode, validatePattern } from './invalidation'
import { DEPENDENCY_TAG, dependencyTag, Invalidator } from './invalidator'
import type { CacheLayer, LayerWrite, LocalCacheLayer } from './layer'
import { type CloseOptions, readCloseOptions } from './lifecycle'
import type { Loader } from './load-runner'
import { type LoadPlan, scopeTags } from './plan'
import { loadValidated, readSchema, readValidated, type StandardSchemaV1, type WithSchema } from './schema'
import { type CacheStackOptions, LAYER_ERROR_MODES, type LayerErrorMode, StackState } from './stack-state'
import type { CacheStats } from './stats'
import {
  assertCacheableValue,
  assertKey,
  assertKeyPrefix,
  assertKnownOptions,
  assertOneOf,
  assertPositiveInteger,
  assertTags,
  assertTtl,
  MAX_KEY_LENGTH,
} from './validation'

export type { BatchLoader, BatchLoaderContext } from './batch-load'
export type { CloseOptions } from './lifecycle'
export type { Loader } from './load-runner'
export type { CacheStackOptions, GracefulDegradationOptions, LayerErrorMode } from './stack-state'

const TAG_MODES: readonly TagMatchMode[] = ['any', 'all']

/** Everything one change invalidates (see CacheStack.invalidate and InvalidationRules). */
export interface InvalidationPlan {
  /** Keys to delete; their dependents (dependsOn) go with them. */
  readonly keys?: readonly string[]
  readonly tags?: readonly string[]
  /** How `tags` combine. Default 'any'. */
  readonly tagMode?: TagMatchMode
  readonly prefixes?: readonly string[]
  readonly patterns?: readonly string[]
}
const INVALIDATION_PLAN = ['keys', 'tags', 'tagMode', 'prefixes', 'patterns'] as const

export interface SetOptions {
  /** Lifetime in ms; defaults to the stack's ttl, then to each layer's own. */
  readonly ttl?: number
  /** Labels for group invalidation; stored with the entry. */
  readonly tags?: readonly string[]
  /**
   * Keys (in this namespace) this entry is derived from: deleting or invalidating any of them removes
   * this entry too, transitively.
   */
  readonly dependsOn?: readonly string[]
}
const SET_OPTIONS = ['ttl', 'tags', 'dependsOn'] as const

export interface GetOrSetOptions extends SetOptions, FreshnessOptions {
  readonly onLayerError?: LayerErrorMode
  /**
   * getOrSet and wrap only: aborting it stops this caller's wait (it rejects with the signal's reason,
   * see abortError); the load goes on for the other callers, and stops (its `ctx.signal` aborts) once
   * every caller waiting for it aborted. An already aborted signal rejects at once.
   */
  readonly signal?: AbortSignal
  /**
   * getOrSet and wrap only: a Standard Schema (zod, valibot, arktype…) the value must pass. A cached value
   * it refuses is a counted miss and is reloaded; the loader's value must pass before it is cached (else
   * SchemaMismatchError). The answer is the schema's output.
   */
  readonly schema?: StandardSchemaV1
}
const GET_OR_SET_OPTIONS = ['ttl', 'tags', 'dependsOn', 'onLayerError', ...FRESHNESS_OPTIONS] as const
/** What a getOrSet call takes: a load's options and the caller's own signal. */
const GET_OR_SET_CALL_OPTIONS = [...GET_OR_SET_OPTIONS, 'signal', 'schema'] as const

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

export interface ReadOptions {
  readonly onLayerError?: LayerErrorMode
  /** Aborting it stops this caller's wait with the signal's reason (see abortError); reads are not shared. */
  readonly signal?: AbortSignal
  /**
   * get and mget: a Standard Schema (zod, valibot, arktype…) the cached value must pass; one it refuses
   * is a counted miss (`schemaMismatches`, a `schemaMismatch` event). The answer is the schema's output.
   */
  readonly schema?: StandardSchemaV1
}
const READ_OPTIONS = ['onLayerError', 'signal', 'schema'] as const
const HAS_OPTIONS = ['onLayerError', 'signal'] as const

export interface MsetEntry<T = unknown> extends SetOptions {
  readonly key: string
  readonly value: T
}

export interface WrapOptions<A extends unknown[]> extends GetOrSetOptions {
  /** Builds the key suffix from the call's arguments; default `JSON.stringify(args)`. */
  readonly keyResolver?: (...args: A) => string
}
const WRAP_OPTIONS = ['keyResolver', ...GET_OR_SET_CALL_OPTIONS] as const

/**
 * The part of key validation a memory hit needs: type and length. The rest (control characters, the
 * reserved '~') runs only after a miss, which is safe because no such key is ever stored, so it cannot
 * hit; a refused key has then only counted its memory miss. Even one more char-code test here cost the
 * L1 hit about 8% in `pnpm bench`.
 */
function hitPathKey(key: unknown): string {
  return isHitPathKey(key) ? key : assertKey(key)
}

function isHitPathKey(key: unknown): key is string {
  return typeof key === 'string' && key.length !== 0 && key.length <= MAX_KEY_LENGTH
}

/** What a hit on `entry` (an in-process layer's) answers: its value, or undefined for a cached "absent". */
function resolvedAnswer(state: StackState, l1: LocalCacheLayer, entry: CacheEntry): Promise<unknown> {
  return entry.absent === undefined ? l1.resolved(entry) : Promise.resolve(state.answerOf(entry))
}

function normalizeNamespace(prefix: unknown): string {
  const name = assertKey(prefix, 'namespace')
  return name.endsWith(':') ? name : `${name}:`
}

/**
 * A stack of cache layers, fastest first (typically MemoryLayer over RedisLayer).
 * Reads stop at the first layer that has the key and copy it into the faster layers above;
 * writes go to every layer. `namespace(prefix)` returns a view with the same API over the same layers.
 */
export class CacheStack {
  private readonly state: StackState
  private readonly invalidator: Invalidator
  private readonly prefix: string
  /** The plan of a getOrSet without options, for this view (its tags are scoped by its prefix). */
  private readonly defaultPlan: LoadPlan

  constructor(layers: readonly CacheLayer[], options: CacheStackOptions = {}) {
    this.state = new StackState(layers, options)
    this.invalidator = new Invalidator(this.state)
    this.prefix = ''
    this.defaultPlan = this.state.defaultPlan
  }

  /** A view whose keys and tags all live under `prefix:`; nest freely. Shares layers, stats and events. */
  namespace(prefix: string): CacheStack {
    const view = Object.create(CacheStack.prototype) as CacheStack
    const scoped = this.prefix + normalizeNamespace(prefix)
    Object.assign(view, {
      state: this.state,
      invalidator: this.invalidator,
      prefix: scoped,
      defaultPlan: { ...this.state.defaultPlan, tagPrefix: scoped },
    })
    return view
  }

  /**
   * Removes every entry tagged with `tag` (in this namespace) from every layer and returns how many keys
   * were removed. Loads and reads in flight when it runs do not write their values back.
   */
  invalidateByTag(tag: string): Promise<number> {
    return this.invalidateByTags([tag], 'any')
  }

  /** Like invalidateByTag for several tags: keys carrying `any` of them, or `all` of them. */
  invalidateByTags(tags: readonly string[], mode: TagMatchMode = 'any'): Promise<number> {
    if (!observed(channels.invalidate)) return this.invalidateByTagsNow(tags, mode)
    const context = this.invalidationContext(
      'tags',
      Array.isArray(tags) ? scopeTags(tags, this.prefix) : undefined,
    )
    return observe(
      channels.invalidate,
      context,
      async () => (context.count = await this.invalidateByTagsNow(tags, mode)),
    )
  }

  private async invalidateByTagsNow(tags: readonly string[], mode: TagMatchMode = 'any'): Promise<number> {
    this.state.lifecycle.assertOpen()
    const checked = assertTags(tags, Number.POSITIVE_INFINITY)
    if (checked === undefined) throw new InvalidOptionError('invalidateByTags needs at least one tag')
    assertOneOf(mode, TAG_MODES, 'tag match mode')
    const scoped = scopeTags(checked, this.prefix)!
    const possible = this.state.dependentsPossible() // asked alongside, not after
    const found = await this.invalidator.removeTagged(scoped, mode)
    const dependents = await this.invalidator.cascadeIfDependents([...found], possible)
    const count = found.size + dependents
    const state = this.state
    state.stats.invalidations++
    if (state.events.listening('invalidate')) {
      state.events.emit('invalidate', { kind: 'tags', tags: scoped, mode, count })
    }
    return count
  }

  /**
   * Removes every entry whose key starts with `prefix` (in this namespace) from every layer and returns how
   * many were removed; `''` clears the whole namespace. Served by an index (a trie in memory, an ordered
   * set in Redis), so the cost follows the matches, not the keyspace.
   */
  invalidateByPrefix(prefix: string): Promise<number> {
    if (!observed(channels.invalidate)) return this.invalidateByPrefixNow(prefix)
    const context = this.invalidationContext('prefix', [this.prefix + String(prefix)])
    return observe(
      channels.invalidate,
      context,
      async () => (context.count = await this.invalidateByPrefixNow(prefix)),
    )
  }

  private async invalidateByPrefixNow(prefix: string): Promise<number> {
    this.state.lifecycle.assertOpen()
    const checked = assertKeyPrefix(prefix)
    await this.state.generations?.confirm()
    const scope = this.state.keyspace + this.prefix + checked
    const count = await this.invalidator.matching({ scope })
    if (this.state.events.listening('invalidate')) {
      this.state.events.emit('invalidate', { kind: 'prefix', prefix: scope, count })
    }
    return count
  }

  /**
   * Removes every entry whose key (in this namespace) matches the glob `pattern` (`*`: any run of
   * characters, `?`: exactly one; nothing else is special) and returns how many were removed. The
   * namespace is matched literally in front of the pattern, so it never reaches another tenant.
   */
  invalidateByPattern(pattern: string): Promise<number> {
    if (!observed(channels.invalidate)) return this.invalidateByPatternNow(pattern)
    const context = this.invalidationContext('pattern', [this.prefix + String(pattern)])
    return observe(
      channels.invalidate,
      context,
      async () => (context.count = await this.invalidateByPatternNow(pattern)),
    )
  }

  private async invalidateByPatternNow(pattern: string): Promise<number> {
    this.state.lifecycle.assertOpen()
    const checked = validatePattern(pattern)
    await this.state.generations?.confirm()
    const scope = this.state.keyspace + this.prefix
    const count = await this.invalidator.matching({ scope, pattern: checked })
    if (this.state.events.listening('invalidate')) {
      this.state.events.emit('invalidate', { kind: 'pattern', scope, pattern: checked, count })
    }
    return count
  }

  /**
   * Applies several invalidations as one change (what a domain event implies): keys (deleted, with their
   * dependents), tags, prefixes and patterns, in that order. Everything is validated before anything is
   * removed. Returns the number of keys given plus what each group invalidation removed.
   */
  invalidate(plan: InvalidationPlan): Promise<number> {
    if (!observed(channels.invalidate)) return this.invalidateNow(plan)
    const context = this.invalidationContext('plan', [])
    return observe(channels.invalidate, context, async () => (context.count = await this.invalidateNow(plan)))
  }

  private async invalidateNow(plan: InvalidationPlan): Promise<number> {
    this.state.lifecycle.assertOpen()
    assertKnownOptions(plan, INVALIDATION_PLAN, 'invalidate')
    if (plan === undefined)
      throw new InvalidOptionError('invalidate expects { keys?, tags?, prefixes?, patterns? }')
    const list = (value: unknown, what: string): readonly string[] => {
      if (value === undefined) return []
      if (!Array.isArray(value)) throw new InvalidOptionError(`invalidate: ${what} must be an array`)
      return value
    }
    const keys = list(plan.keys, 'keys').map((key) => assertKey(key))
    const tags = assertTags(list(plan.tags, 'tags'), Number.POSITIVE_INFINITY)
    const mode = assertOneOf(plan.tagMode, TAG_MODES, 'tag match mode') ?? 'any'
    const prefixes = list(plan.prefixes, 'prefixes').map(assertKeyPrefix)
    const patterns = list(plan.patterns, 'patterns').map(validatePattern)
    // A delete cannot tell whether a key existed: the keys count as given. Warmers refill once, after the
    // whole change.
    return this.invalidator.holdingRefills(async () => {
      let count = keys.length
      if (keys.length > 0) await this.mdelete(keys)
      if (tags !== undefined) count += await this.invalidateByTags(tags, mode)
      for (const prefix of prefixes) count += await this.invalidateByPrefix(prefix)
      for (const pattern of patterns) count += await this.invalidateByPattern(pattern)
      return count
    })
  }

  /**
   * Soft invalidation: marks `key` (in this namespace) stale in every layer without removing it, on every
   * instance. Reads that want fresh values (get, mget, getOrSet without a stale window) miss it at once;
   * getOrSet with `staleWhileRevalidate` or `staleIfError` may still answer it while its reload runs, for
   * as long as the window (counted from now) and the entry's TTL allow. A hard invalidation afterwards
   * removes it like any entry. Loads of the key in flight do not write back. Dependents are untouched.
   */
  expire(key: string): Promise<void> {
    if (!observed(channels.invalidate)) return this.expireNow(key).then(() => undefined)
    const context = this.invalidationContext('expire', [this.prefix + String(key)])
    return observe(channels.invalidate, context, async () => {
      context.count = await this.expireNow(key)
    })
  }

  private async expireNow(key: string): Promise<number> {
    this.state.lifecycle.assertOpen()
    assertKey(key)
    let count = 0
    await this.inGeneration(async () => {
      count = await this.state.expiry.keys([this.fullKey(key)])
    })
    this.expired({ kind: 'expire', key: this.prefix + key, count })
    return count
  }

  /** Soft invalidation (see expire) of every entry tagged with `tag` in this namespace; returns how many. */
  expireByTag(tag: string): Promise<number> {
    if (!observed(channels.invalidate)) return this.expireByTagNow(tag)
    const context = this.invalidationContext('expireByTag', [this.prefix + String(tag)])
    return observe(channels.invalidate, context, async () => (context.count = await this.expireByTagNow(tag)))
  }

  private async expireByTagNow(tag: string): Promise<number> {
    this.state.lifecycle.assertOpen()
    const scoped = scopeTags(assertTags([tag], Number.POSITIVE_INFINITY)!, this.prefix)!
    const count = await this.state.expiry.tagged(scoped, 'any')
    this.expired({ kind: 'expireByTag', tags: scoped, count })
    return count
  }

  /** Soft invalidation (see expire) of every entry whose key starts with `prefix` in this namespace. */
  expireByPrefix(prefix: string): Promise<number> {
    if (!observed(channels.invalidate)) return this.expireByPrefixNow(prefix)
    const context = this.invalidationContext('expireByPrefix', [this.prefix + String(prefix)])
    return observe(
      channels.invalidate,
      context,
      async () => (context.count = await this.expireByPrefixNow(prefix)),
    )
  }

  private async expireByPrefixNow(prefix: string): Promise<number> {
    this.state.lifecycle.assertOpen()
    const checked = assertKeyPrefix(prefix)
    await this.state.generations?.confirm()
    const count = await this.state.expiry.matching({ scope: this.state.keyspace + this.prefix + checked })
    this.expired({ kind: 'expireByPrefix', prefix: this.prefix + checked, count })
    return count
  }

  /** Counts a soft invalidation that finished and tells the `invalidate` listeners. */
  private expired(event: CacheEventMap['invalidate']): void {
    const state = this.state
    state.stats.expirations++
    if (state.events.listening('invalidate')) state.events.emit('invalidate', event)
  }

  /**
   * Moves every instance sharing the Redis layer to a new, empty generation at once and returns its
   * number; keys of the old one are never read again (and, with `generationCleanup`, are removed in
   * batches in the background). Needs the `generation` option.
   */
  bumpGeneration(): Promise<number> {
    if (!observed(channels.invalidate)) return this.bumpGenerationNow()
    const context = this.invalidationContext('generation', [])
    return observe(channels.invalidate, context, async () => (context.count = await this.bumpGenerationNow()))
  }

  private async bumpGenerationNow(): Promise<number> {
    this.state.lifecycle.assertOpen()
    const generations = this.state.generations
    if (generations === undefined) {
      throw new InvalidOptionError('bumpGeneration needs the CacheStack option `generation`')
    }
    const previous = generations.current
    const next = await generations.bump()
    const bus = this.state.bus
    if (bus !== undefined) await bus.announce([{ generation: next }])
    if (generations.cleanup !== undefined)
      this.invalidator.cleanUpGeneration(previous, generations.cleanup.batchSize)
    return next
  }

  /**
   * Keeps `key` (in this namespace) cached: whenever an invalidation removes it (delete, tag, prefix,
   * pattern, dependency, generation), it is refilled once with `loader`, right after, in the background,
   * single-flighted with any load of the key. Registering the same key again replaces its warmer.
   * Returns the function that removes the warmer.
   */
  addWarmer<T>(key: string, loader: Loader<T>, options?: GetOrSetOptions): () => void {
    this.state.lifecycle.assertOpen()
    assertKey(key)
    if (typeof loader !== 'function') throw new InvalidOptionError('addWarmer: loader must be a function')
    if (options !== undefined) this.planOf(options, GET_OR_SET_OPTIONS, 'addWarmer')
    return this.state.warmers.add(this.prefix + key, () => this.refresh(key, loader, options))
  }

  /**
   * The current version of `name` (in this namespace), for keys that embed it: cache under
   * `user:42:v${await cache.keyVersion('user:42')}:profile` and `bumpKeyVersion('user:42')` to make every
   * such key unreachable at once, with no index and no scan (old keys expire with their TTL). Shared by
   * every instance through Redis. Tags do the same with immediate removal; versions cost nothing on writes.
   */
  async keyVersion(name: string): Promise<number> {
    this.state.lifecycle.assertOpen()
    return this.state.keyVersions.current(this.prefix + assertKey(name, 'version name'))
  }

  /** Moves `name` to its next version (Redis INCR) and returns it. */
  bumpKeyVersion(name: string): Promise<number> {
    if (!observed(channels.invalidate)) return this.bumpKeyVersionNow(name)
    const context = this.invalidationContext('version', [this.prefix + String(name)])
    return observe(
      channels.invalidate,
      context,
      async () => (context.count = await this.bumpKeyVersionNow(name)),
    )
  }

  private async bumpKeyVersionNow(name: string): Promise<number> {
    this.state.lifecycle.assertOpen()
    const next = await this.state.keyVersions.bump(this.prefix + assertKey(name, 'version name'))
    if (this.state.events.listening('invalidate')) {
      this.state.events.emit('invalidate', { kind: 'version', name: this.prefix + name, version: next })
    }
    return next
  }

  /** The current generation (after the last bump or check), or undefined without generations. */
  get generation(): number | undefined {
    return this.state.generations?.current
  }

  /** Waits for a new instance's first read of the shared generation (a no-op afterwards). */
  private async generationKnown(): Promise<void> {
    const generations = this.state.generations
    if (generations?.pending) await generations.ready
  }

  /**
   * The stored key: generation, namespace, key. Without generations and namespace (the common case, and
   * the hot path) no concatenation.
   */
  private fullKey(key: string): string {
    const keyspace = this.state.keyspace
    if (keyspace === '') return this.prefix === '' ? key : this.prefix + key
    return keyspace + this.prefix + key
  }

  /** Runs a remote write or delete in the current generation, again in the new one if it moved meanwhile. */
  private inGeneration(op: () => Promise<void>): Promise<void> {
    const generations = this.state.generations
    return generations === undefined ? op() : generations.around(op)
  }

  /** The key prefix of this view ('' for the root stack). */
  get keyPrefix(): string {
    return this.prefix
  }

  get layers(): readonly CacheLayer[] {
    return this.state.userLayers
  }

  // Not `async`: a hit answers with a resolved promise and no async frame, a miss hands back the
  // read-through's own promise instead of wrapping it in another.
  get<S extends StandardSchemaV1>(
    key: string,
    options: WithSchema<ReadOptions, S>,
  ): Promise<StandardSchemaV1.InferOutput<S> | undefined>
  get<T = unknown>(key: string, options?: ReadOptions): Promise<T | undefined>
  get<T = unknown>(key: string, options?: ReadOptions): Promise<T | undefined> {
    const traced = channels.get.hasSubscribers
    // The hot path, kept small so it inlines into callers: no options, a key memory can hold, no tracer.
    if (!traced && options === undefined && isHitPathKey(key)) {
      const full = this.fullKey(key)
      const hit = this.memoryHit(full)
      if (hit !== undefined) return hit as Promise<T | undefined>
      return this.readBelowMemory<T>(key, full, this.state.onLayerError, options, undefined)
    }
    if (!traced) return this.readAll<T>(key, options, undefined)
    const context = this.operationContext('get', key, 1)
    return observe(channels.get, context, () => this.readAll<T>(key, options, context))
  }

  /** `get` with options, an unusual key or a tracer: the same steps, each checked. */
  private readAll<T>(
    key: string,
    options: ReadOptions | undefined,
    context: CacheOperationContext | undefined,
  ): Promise<T | undefined> {
    let full: string
    let mode = this.state.onLayerError
    try {
      full = this.fullKey(hitPathKey(key))
      if (options !== undefined) {
        assertKnownOptions(options, READ_OPTIONS, 'get')
        mode = this.errorMode(options)
        const schema = readSchema(options.schema, 'get')
        if (schema !== undefined) {
          const read = this.get<unknown>(key, { ...options, schema: undefined })
          const mismatch = (issues: readonly unknown[]) => this.state.schemaMismatch(full, issues)
          return readValidated(read, schema, mismatch) as Promise<T | undefined>
        }
        if (readSignal(options.signal, 'get')?.aborted) {
          this.state.lifecycle.assertOpen()
          return unlessAborted(Promise.resolve(undefined), options.signal!)
        }
      }
      const hit = this.memoryHit(full)
      if (hit !== undefined) {
        if (context !== undefined) this.answeredByMemory(context)
        return hit as Promise<T | undefined>
      }
    } catch (error) {
      return Promise.reject(error)
    }
    return this.readBelowMemory<T>(key, full, mode, options, context)
  }

  /** `get` after a memory miss: the rest of key validation, then the layers below. */
  private readBelowMemory<T>(
    key: string,
    full: string,
    mode: LayerErrorMode,
    options: ReadOptions | undefined,
    context: CacheOperationContext | undefined,
  ): Promise<T | undefined> {
    try {
      assertKey(key)
      this.state.lifecycle.assertOpen()
    } catch (error) {
      return Promise.reject(error)
    }
    if (context === undefined && channels.operationDone.hasSubscribers) {
      // Metrics time what goes past memory (the tracer, when there is one, already wraps the call).
      const timed = this.operationContext('get', key, 1)
      return observe(channels.get, timed, () => this.readBelowMemory<T>(key, full, mode, options, timed))
    }
    const state = this.state
    // A new instance learns the fleet's generation before its first remote read (keys depend on it).
    if (state.generations?.pending) {
      const moved = state.generations.ready.then(() => {
        const full = this.fullKey(key)
        const hit = this.memoryHit(full)
        if (hit === undefined) return this.readBelowMemory<T>(key, full, mode, options, context)
        if (context !== undefined) this.answeredByMemory(context)
        return hit as Promise<T | undefined>
      })
      return options?.signal === undefined ? moved : unlessAborted(moved, options.signal)
    }
    const read = state.reads.readThrough(
      full,
      state.l1 === undefined ? 0 : 1,
      mode,
      false,
      true,
      context,
    ) as Promise<T | undefined>
    const signal = options?.signal
    return signal === undefined ? read : unlessAborted(read, signal)
  }

  /** A traced call's context, before anything is checked (a bad key is reported as given). */
  private operationContext(
    operation: CacheOperationContext['operation'],
    key: unknown,
    keyCount: number,
  ): CacheOperationContext {
    const state = this.state
    return {
      operation,
      cache: state.name,
      key: typeof key === 'string' ? this.fullKey(key) : String(key),
      keyCount,
      generation: state.generations?.current,
    }
  }

  private invalidationContext(
    kind: InvalidationContext['kind'],
    target: readonly string[] | undefined,
  ): InvalidationContext {
    return { operation: 'invalidate', kind, cache: this.state.name, target: target ?? [] }
  }

  /** A traced read answered from the in-process layer. */
  private answeredByMemory(context: CacheOperationContext): void {
    context.layer = this.state.l1!.name
    context.hit = true
    context.inProcess = true
  }

  async has(key: string, options?: ReadOptions): Promise<boolean> {
    this.state.lifecycle.assertOpen()
    assertKey(key)
    assertKnownOptions(options, HAS_OPTIONS, 'has')
    const signal = readSignal(options?.signal, 'has')
    if (signal !== undefined) return unlessAborted(this.has(key, { ...options, signal: undefined }), signal)
    const mode = this.errorMode(options)
    await this.generationKnown()
    const full = this.fullKey(key)
    const { layers, generations } = this.state
    for (let i = 0; i < layers.length; i++) {
      const layer = layers[i]!
      try {
        const found = layer.has(full)
        if (
          await (generations === undefined || layer.local
            ? found
            : generations.guard(found as Promise<boolean>, false))
        )
          return true
      } catch (error) {
        this.state.layerFailed(i, 'has', full, error, mode)
      }
    }
    return false
  }

  set<T>(key: string, value: T, options?: SetOptions): Promise<void> {
    if (!observed(channels.set)) return this.setNow(key, value, options)
    return observe(channels.set, this.operationContext('set', key, 1), () => this.setNow(key, value, options))
  }

  private async setNow<T>(key: string, value: T, options?: SetOptions): Promise<void> {
    this.state.lifecycle.assertOpen()
    assertKey(key)
    assertKnownOptions(options, SET_OPTIONS, 'set')
    const ttl = assertTtl(options?.ttl) ?? this.state.defaultTtl
    assertCacheableValue(value, key)
    this.storedTags(options?.tags, options?.dependsOn) // validated before anything is written
    await this.inGeneration(() =>
      this.writeNewValues([
        { key: this.fullKey(key), value, ttl, tags: this.storedTags(options?.tags, options?.dependsOn) },
      ]),
    )
  }

  mset<T>(entries: readonly MsetEntry<T>[]): Promise<void> {
    if (!observed(channels.mset)) return this.msetNow(entries)
    const first = Array.isArray(entries) ? entries[0]?.key : undefined
    const context = this.operationContext('mset', first, Array.isArray(entries) ? entries.length : 0)
    return observe(channels.mset, context, () => this.msetNow(entries))
  }

  private async msetNow<T>(entries: readonly MsetEntry<T>[]): Promise<void> {
    this.state.lifecycle.assertOpen()
    if (!Array.isArray(entries))
      throw new InvalidOptionError('mset expects an array of { key, value, ttl?, tags? }')
    // Validate everything before touching any layer: a rejected call changes nothing.
    const checked = entries.map((item) => {
      assertKnownOptions(item, ['key', 'value', 'ttl', 'tags', 'dependsOn'], 'mset entry')
      assertKey(item.key)
      const ttl = assertTtl(item.ttl) ?? this.state.defaultTtl
      this.storedTags(item.tags, item.dependsOn)
      assertCacheableValue(item.value, item.key)
      return { item, ttl }
    })
    // Keys (and dependency tags) are built in the generation the write lands in.
    await this.inGeneration(() =>
      this.writeNewValues(
        checked.map(({ item, ttl }) => ({
          key: this.fullKey(item.key),
          value: item.value as unknown,
          ttl,
          tags: this.storedTags(item.tags, item.dependsOn),
        })),
      ),
    )
  }

  /** Removes the key from every layer, and every entry that depends on it (`dependsOn`), transitively. */
  delete(key: string): Promise<void> {
    if (!observed(channels.delete)) return this.deleteNow(key)
    return observe(channels.delete, this.operationContext('delete', key, 1), () => this.deleteNow(key))
  }

  private async deleteNow(key: string): Promise<void> {
    this.state.lifecycle.assertOpen()
    assertKey(key)
    await this.inGeneration(async () => {
      const full = this.fullKey(key)
      // Asked beside the delete, not after it: the mark is set before any dependent is written or loaded.
      const possible = this.state.dependentsPossible()
      await this.invalidator.deleteKeys([full])
      await this.invalidator.cascadeIfDependents([full], possible)
    })
  }

  mdelete(keys: readonly string[]): Promise<void> {
    if (!observed(channels.delete)) return this.mdeleteNow(keys)
    const many = Array.isArray(keys)
    const context = this.operationContext('delete', many ? keys[0] : undefined, many ? keys.length : 0)
    return observe(channels.delete, context, () => this.mdeleteNow(keys))
  }

  private async mdeleteNow(keys: readonly string[]): Promise<void> {
    this.state.lifecycle.assertOpen()
    if (!Array.isArray(keys)) throw new InvalidOptionError('mdelete expects an array of keys')
    for (const key of keys) assertKey(key)
    await this.inGeneration(async () => {
      const fulls = keys.map((key) => this.fullKey(key))
      // Asked beside the delete, not after it: the mark is set before any dependent is written or loaded.
      const possible = this.state.dependentsPossible()
      await this.invalidator.deleteKeys(fulls)
      await this.invalidator.cascadeIfDependents(fulls, possible)
    })
  }

  /** The tags an entry is stored with: the caller's (namespaced) plus one per dependency. */
  private storedTags(
    tags: readonly string[] | undefined,
    dependsOn: readonly string[] | undefined,
  ): readonly string[] | undefined {
    const scoped = scopeTags(assertTags(tags), this.prefix)
    if (dependsOn === undefined) return scoped
    if (!Array.isArray(dependsOn)) throw new InvalidOptionError('dependsOn must be an array of keys')
    const dependencies = dependsOn.map((key) => dependencyTag(this.fullKey(assertKey(key, 'dependsOn key'))))
    if (dependencies.length === 0) return scoped
    // This process now knows dependents exist; shared layers are told before the write or load.
    this.state.dependenciesUsed = true
    return [...(scoped ?? []), ...dependencies]
  }

  mget<S extends StandardSchemaV1>(
    keys: readonly string[],
    options: WithSchema<ReadOptions, S>,
  ): Promise<(StandardSchemaV1.InferOutput<S> | undefined)[]>
  mget<T = unknown>(keys: readonly string[], options?: ReadOptions): Promise<(T | undefined)[]>
  mget<T = unknown>(keys: readonly string[], options?: ReadOptions): Promise<(T | undefined)[]> {
    if (!observed(channels.mget)) return this.mgetNow<T>(keys, options)
    const many = Array.isArray(keys)
    const context = this.operationContext('mget', many ? keys[0] : undefined, many ? keys.length : 0)
    return observe(channels.mget, context, async () => {
      const values = await this.mgetNow<T>(keys, options)
      context.hit = values.every((value) => value !== undefined)
      return values
    })
  }

  private async mgetNow<T = unknown>(
    keys: readonly string[],
    options?: ReadOptions,
  ): Promise<(T | undefined)[]> {
    this.state.lifecycle.assertOpen()
    if (!Array.isArray(keys)) throw new InvalidOptionError('mget expects an array of keys')
    for (const key of keys) assertKey(key)
    assertKnownOptions(options, READ_OPTIONS, 'mget')
    const schema = readSchema(options?.schema, 'mget')
    if (schema !== undefined) {
      const values = this.mget<unknown>(keys, { ...options, schema: undefined })
      return Promise.all(
        keys.map((key, i) => {
          const mismatch = (issues: readonly unknown[]) =>
            this.state.schemaMismatch(this.fullKey(key), issues)
          return readValidated(
            values.then((all) => all[i]),
            schema,
            mismatch,
          )
        }),
      ) as Promise<(T | undefined)[]>
    }
    const signal = readSignal(options?.signal, 'mget')
    if (signal !== undefined)
      return unlessAborted(this.mget<T>(keys, { ...options, signal: undefined }), signal)
    await this.generationKnown()
    const fulls = keys.map((key) => this.fullKey(key))
    const mode = this.errorMode(options)
    const state = this.state
    const { layers, stats } = state
    // Filled, not sparse: callers map/filter the result and holes would be skipped.
    const found: (CacheEntry | undefined)[] = new Array(fulls.length).fill(undefined)
    let pending = fulls.map((_, i) => i)
    const gate = state.gate
    const ticket = gate.open()
    try {
      for (let li = 0; li < layers.length && pending.length > 0; li++) {
        const layer = layers[li]!
        let entries: (CacheEntry | undefined)[]
        try {
          const reply = state.reads.getMany(
            li,
            pending.map((i) => fulls[i]!),
          )
          entries =
            state.generations === undefined || layer.local
              ? await reply
              : await state.generations.guard(
                  Promise.resolve(reply),
                  pending.map(() => undefined),
                )
        } catch (error) {
          this.state.layerFailed(li, 'getMany', undefined, error, mode)
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
        for (const { key, entry } of backfills) gate.backfill(key, entry, li, ticket)
        pending = stillMissing
      }
    } finally {
      gate.close()
    }
    for (const index of pending) this.state.countMiss(fulls[index]!)
    return found.map((entry) =>
      entry === undefined ? undefined : (this.state.answerOf(entry) as T | undefined),
    )
  }

  /**
   * Returns the cached value, or runs `loader` once for all concurrent callers of the same key, caches
   * its result in every layer and returns it. A loader error reaches every waiter and caches nothing;
   * `undefined` from the loader is returned but not cached (unless `negativeTtl` says otherwise).
   * Freshness options (stale-while-revalidate, stale-if-error, timeouts, early refresh) apply here.
   */
  // Not `async`: a memory hit answers with a resolved promise and no async frame, like `get`.
  getOrSet<S extends StandardSchemaV1>(
    key: string,
    loader: Loader<unknown>,
    options: WithSchema<GetOrSetOptions, S>,
  ): Promise<StandardSchemaV1.InferOutput<S>>
  getOrSet<T>(key: string, loader: Loader<T>, options?: GetOrSetOptions): Promise<T>
  getOrSet<T>(key: string, loader: Loader<T>, options?: GetOrSetOptions): Promise<T> {
    const traced = channels.getOrSet.hasSubscribers
    // The hot path, kept small so it inlines into callers: no options, a key memory can hold, no tracer.
    if (!traced && options === undefined && isHitPathKey(key) && typeof loader === 'function') {
      return this.getOrLoad(key, this.fullKey(key), loader, this.defaultPlan, options, undefined)
    }
    if (!traced) return this.checkedGetOrSet(key, loader, options, undefined)
    const context = this.operationContext('getOrSet', key, 1)
    return observe(channels.getOrSet, context, () => this.checkedGetOrSet(key, loader, options, context))
  }

  /** getOrSet with options, an unusual key or a tracer: arguments checked first. */
  private checkedGetOrSet<T>(
    key: string,
    loader: Loader<T>,
    options: GetOrSetOptions | undefined,
    context: CacheOperationContext | undefined,
  ): Promise<T> {
    let full: string
    let plan: LoadPlan
    try {
      full = this.fullKey(hitPathKey(key))
      if (typeof loader !== 'function') throw new InvalidOptionError('getOrSet: loader must be a function')
      plan =
        options === undefined ? this.defaultPlan : this.planOf(options, GET_OR_SET_CALL_OPTIONS, 'getOrSet')
      const schema = readSchema(options?.schema, 'getOrSet')
      if (schema !== undefined) return this.getOrLoadValidated(key, full, loader, schema, options!)
      if (readSignal(options?.signal, 'getOrSet')?.aborted) {
        this.state.lifecycle.assertOpen()
        return unlessAborted(Promise.resolve(undefined as T), options!.signal!)
      }
    } catch (error) {
      return Promise.reject(error)
    }
    return this.getOrLoad(key, full, loader, plan, options, context)
  }

  /**
   * getOrSet with a schema: the load and the loader checked by it; a cached value it refuses is reloaded
   * through refresh (single-flighted), under the caller's signal.
   */
  private getOrLoadValidated<T>(
    key: string,
    full: string,
    loader: Loader<T>,
    schema: StandardSchemaV1,
    options: GetOrSetOptions,
  ): Promise<T> {
    const { schema: _schema, signal, ...refreshOptions } = options
    return loadValidated(
      key,
      schema,
      loader,
      (checked) => this.getOrSet(key, checked, { ...options, schema: undefined }),
      (checked) => {
        const reload = this.refresh(key, checked, refreshOptions)
        return signal === undefined ? reload : unlessAborted(reload, signal)
      },
      (issues) => this.state.schemaMismatch(full, issues),
    ) as Promise<T>
  }

  /** getOrSet once its arguments are checked: a memory hit, judged for freshness, or a load. */
  private getOrLoad<T>(
    key: string,
    full: string,
    loader: Loader<T>,
    plan: LoadPlan,
    options: GetOrSetOptions | undefined,
    context: CacheOperationContext | undefined,
  ): Promise<T> {
    const state = this.state
    const l1 = state.l1
    let fallback: CacheEntry | undefined
    if (l1 !== undefined) {
      const found = l1.peek(full)
      if (found === undefined) {
        state.stats.layerMisses[0]!++
      } else if (!l1.isEntry(found)) {
        state.countHit(0, full)
        if (context !== undefined) this.answeredByMemory(context)
        return Promise.resolve(found as T)
      } else {
        const entry = found
        const verdict = entry.freshUntil === undefined ? 'fresh' : judge(entry, plan.policy)
        if (verdict === 'fallback') {
          state.stats.layerMisses[0]!++
          fallback = entry
        } else {
          state.countHit(0, full)
          if (context !== undefined) {
            this.answeredByMemory(context)
            if (verdict === 'revalidate') context.stale = 'revalidate'
          }
          if (verdict !== 'fresh') state.loads.refreshInBackground(full, key, loader, plan, entry, verdict)
          return resolvedAnswer(state, l1, entry) as Promise<T>
        }
      }
    }
    if (context === undefined && channels.operationDone.hasSubscribers) {
      // Metrics time what goes past memory (the tracer, when there is one, already wraps the call).
      const timed = this.operationContext('getOrSet', key, 1)
      return observe(channels.getOrSet, timed, () =>
        this.loadMissing(key, full, loader, plan, fallback, options, timed),
      )
    }
    return this.loadMissing(key, full, loader, plan, fallback, options, context)
  }

  /** getOrSet past the memory layer: joins a load in flight or starts one. */
  private async loadMissing<T>(
    key: string,
    full: string,
    loader: Loader<T>,
    plan: LoadPlan,
    fallback: CacheEntry | undefined,
    options: GetOrSetOptions | undefined,
    context: CacheOperationContext | undefined,
  ): Promise<T> {
    const state = this.state
    assertKey(key)
    state.lifecycle.assertOpen()
    if (state.generations?.pending) {
      await state.generations.ready
      return this.checkedGetOrSet(key, loader, options, context)
    }
    const inFlight = state.flights.get(full)
    const signal = options?.signal
    if (inFlight !== undefined) {
      state.stats.coalesced++
      if (state.events.listening('coalesced')) state.events.emit('coalesced', { key: full })
      if (context !== undefined) context.coalesced = true
      return state.waiters.join(inFlight as Promise<T>, signal)
    }
    if (context === undefined) {
      return state.waiters.first(
        full,
        state.loads.startLoad(full, key, loader, plan, fallback, 'load'),
        signal,
      )
    }
    const load = state.loads.newTrace(full, 'miss', context)
    const loading = state.loads.startLoad(full, key, loader, plan, fallback, 'load', load)
    const value = await state.waiters.first(full, loading, signal)
    // What answered this caller (a stale answer was not the loader's, whatever the load did next).
    if (load.layer !== undefined) {
      context.layer = load.layer
      context.hit = true
    }
    if (load.degraded) context.degraded = true
    if (load.circuitOpen !== undefined) context.circuitOpen = load.circuitOpen
    if (load.stale !== undefined) context.stale = load.stale
    else if (load.layer === undefined && load.loaded) context.loaded = true
    if (load.writeBack === 'fenced') context.fenced = true
    return value
  }

  /**
   * getOrSet for many keys, with one call of `loadMissing` for all the keys no layer has (DataLoader
   * style): answers the values in the order of `keys` (`undefined` where the loader gave nothing). Each key
   * is single-flighted like a getOrSet: a key already loading joins that load, and a getOrSet of one of
   * these keys made meanwhile joins this batch's load. The keys memory lacks are read from Redis together.
   * Options (ttl, tags, freshness, signal, schema) apply to every key; the loader can set a key's TTL and
   * tags through its context. Races with invalidations are those of getOrSet, key by key.
   */
  getOrSetMany<S extends StandardSchemaV1>(
    keys: readonly string[],
    loadMissing: BatchLoader<unknown>,
    options: WithSchema<GetOrSetOptions, S>,
  ): Promise<(StandardSchemaV1.InferOutput<S> | undefined)[]>
  getOrSetMany<T>(
    keys: readonly string[],
    loadMissing: BatchLoader<T>,
    options?: GetOrSetOptions,
  ): Promise<(T | undefined)[]>
  async getOrSetMany<T>(
    keys: readonly string[],
    loadMissing: BatchLoader<T>,
    options?: GetOrSetOptions,
  ): Promise<(T | undefined)[]> {
    this.state.lifecycle.assertOpen()
    if (!Array.isArray(keys)) throw new InvalidOptionError('getOrSetMany expects an array of keys')
    for (const key of keys) assertKey(key)
    if (typeof loadMissing !== 'function')
      throw new InvalidOptionError('getOrSetMany: loadMissing must be a function')
    if (options !== undefined) {
      this.planOf(options, GET_OR_SET_CALL_OPTIONS, 'getOrSetMany')
      readSignal(options.signal, 'getOrSetMany')
      readSchema(options.schema, 'getOrSetMany')
    }
    await this.generationKnown()
    const unique = [...new Set(keys)]
    // A key already loading joins that load: the batch does not wait for it.
    const expected = new Set(unique.filter((key) => !this.state.flights.has(this.fullKey(key))))
    const batch = new BatchLoad<T>(loadMissing, expected)
    const answers = new Map(
      unique.map((key) => {
        const answer = this.getOrSet<T | undefined>(key, batch.loaderFor(key), options)
        answer.then(
          () => batch.settled(key),
          () => batch.settled(key),
        )
        return [key, answer] as const
      }),
    )
    return Promise.all(keys.map((key) => answers.get(key)!))
  }

  /**
   * Runs `loader` now and caches its result, whatever the cache holds (single-flighted with any load of
   * the key in flight). For warmers and "this changed, recompute it" paths.
   */
  async refresh<T>(key: string, loader: Loader<T>, options?: GetOrSetOptions): Promise<T> {
    this.state.lifecycle.assertOpen()
    assertKey(key)
    if (typeof loader !== 'function') throw new InvalidOptionError('refresh: loader must be a function')
    await this.generationKnown()
    const full = this.fullKey(key)
    const plan =
      options === undefined ? this.defaultPlan : this.planOf(options, GET_OR_SET_OPTIONS, 'refresh')
    const inFlight = this.state.flights.get(full)
    if (inFlight !== undefined) return inFlight as Promise<T>
    // The cached value only informs the loader (ctx.stale); a failing refresh() rejects.
    return this.state.loads.startLoad(full, key, loader, plan, this.state.l1?.get(full), 'force')
  }

  /**
   * Loads many keys with bounded concurrency (start-up warming, re-filling critical keys). Emits a `warm`
   * event per key. Keys already cached are skipped unless `force`. Never rejects for a loader's error:
   * failures are reported in the result.
   */
  async warm(entries: readonly WarmEntry[], options: WarmOptions = {}): Promise<WarmResult> {
    this.state.lifecycle.assertOpen()
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
          state.events.emit('warm', { key: this.fullKey(key), done, total: entries.length, error })
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
  wrap<A extends unknown[], S extends StandardSchemaV1>(
    prefix: string,
    fn: (...args: A) => unknown,
    options: WithSchema<WrapOptions<A>, S>,
  ): (...args: A) => Promise<StandardSchemaV1.InferOutput<S>>
  wrap<A extends unknown[], R>(
    prefix: string,
    fn: (...args: A) => R | Promise<R>,
    options?: WrapOptions<A>,
  ): (...args: A) => Promise<Awaited<R>>
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
    this.planOf(loadOptions, GET_OR_SET_CALL_OPTIONS, 'wrap')
    readSignal(loadOptions.signal, 'wrap')
    readSchema(loadOptions.schema, 'wrap')
    return async (...args: A): Promise<Awaited<R>> => {
      const suffix = keyResolver ? keyResolver(...args) : JSON.stringify(args)
      return this.getOrSet(`${prefix}:${suffix}`, () => fn(...args), loadOptions) as Promise<Awaited<R>>
    }
  }

  /**
   * Shuts the stack down, once (later calls answer the same promise; namespace views share it): from the
   * call on every method rejects with CacheClosedError; warmers stop; the in-process layers are emptied;
   * loads still running (background refreshes, warmer refills, loads callers wait for) get
   * `abandonAfter` ms to finish and write back, then are aborted (`ctx.signal`) with their write-back
   * dropped; last, the invalidation bus and the single-flight coordinator given to the stack are closed.
   * The Redis clients stay open: they are the caller's. Never rejects for a part failing to close (that
   * is an `error` event with operation `close`); rejects only for bad options, having closed nothing.
   */
  close(options?: CloseOptions): Promise<void> {
    let abandonAfter: number
    try {
      abandonAfter = readCloseOptions(options)
    } catch (error) {
      return Promise.reject(error)
    }
    return this.state.lifecycle.close(this.state.closingSteps(), abandonAfter)
  }

  /** `await using cache = new CacheStack(…)`: close() with its defaults when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }

  on<K extends CacheEventName>(name: K, listener: CacheEventListener<K>): () => void {
    return this.state.events.on(name, listener)
  }

  off<K extends CacheEventName>(name: K, listener: CacheEventListener<K>): void {
    this.state.events.off(name, listener)
  }

  /**
   * Counters for the whole stack (shared by every namespace view). With `gracefulDegradation`, each
   * remote layer's entry also says where its circuit breaker is.
   */
  getStats(): CacheStats {
    const snapshot = this.state.stats.snapshot()
    const layers = this.state.layers
    if (!layers.some((layer) => layer instanceof GuardedLayer)) return snapshot
    return {
      ...snapshot,
      layers: snapshot.layers.map((stats, i) => {
        const layer = layers[i]
        return layer instanceof GuardedLayer ? { ...stats, circuit: layer.circuit } : stats
      }),
    }
  }

  /** The stack's `name` option ('default' when not given): the `cache` of its traces and metrics. */
  get name(): string {
    return this.state.name
  }

  resetStats(): void {
    this.state.stats.reset()
  }

  /**
   * The hot path: an in-process first layer answers synchronously, and is counted either way. Answers
   * the promise a read returns, or undefined when memory has no fresh entry.
   */
  private memoryHit(full: string): Promise<unknown> | undefined {
    const state = this.state
    const l1 = state.l1
    if (l1 === undefined) return undefined
    const found = l1.peek(full)
    if (found !== undefined) {
      if (!l1.isEntry(found)) {
        state.countHit(0, full)
        return Promise.resolve(found)
      }
      if (found.freshUntil === undefined || isFresh(found)) {
        state.countHit(0, full)
        return resolvedAnswer(state, l1, found)
      }
    }
    state.stats.layerMisses[0]!++
    return undefined
  }

  /** Validates a call's options and merges them over the stack's defaults. */
  private planOf(options: GetOrSetOptions, allowed: readonly string[], where: string): LoadPlan {
    assertKnownOptions(options, allowed, where)
    const state = this.state
    return {
      ttl: assertTtl(options.ttl) ?? state.defaultTtl,
      tags: assertTags(options.tags),
      dependencyTags: this.storedTags(undefined, options.dependsOn),
      tagPrefix: this.prefix,
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
    const gate = state.gate
    let ticket = 0
    const policy = state.defaultPlan.policy
    const writes: LayerWrite[] = items.map(({ key, value, ttl, tags }) => {
      const built = buildEntry(value, ttl, tags, policy)
      return {
        key,
        entry: built.entry,
        options: { ttl: built.ttl, stillValid: () => gate.allows(key, ticket, 'key') },
      }
    })
    const commits = gate.prepare(writes)
    if (items.some((item) => item.tags?.some((tag) => tag.startsWith(DEPENDENCY_TAG)))) {
      await state.markDependencies()
    }
    // Older reads and loads of these keys must not write back over the new values.
    gate.forget(
      items.map((item) => item.key),
      false,
    )
    ticket = gate.open()
    try {
      state.stats.sets += items.length
      await gate.commit(commits, writes, state.onLayerError, { ticket })
    } finally {
      gate.close()
    }
    if (state.bus?.announcesWrites) await state.bus.announce([{ keys: items.map((item) => item.key) }])
    if (state.events.listening('set')) for (const { key } of items) state.events.emit('set', { key })
  }
}
