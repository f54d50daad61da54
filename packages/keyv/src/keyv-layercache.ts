import { assertKnownOptions, type CacheStack, InvalidOptionError } from '@layercache/core'
import { Keyv, type KeyvOptions, type KeyvStoreAdapter, type StoredData } from 'keyv'

/** Tags for an entry written through Keyv, from its key as the Keyv user wrote it (without the namespace). */
export type KeyvTagsFor = (key: string, namespace: string | undefined) => readonly string[] | undefined

export interface KeyvLayercacheOptions {
  /**
   * Tags each entry is written with, so that `stack.invalidateByTag` reaches entries written through Keyv
   * or cache-manager (whose calls carry no tags). Called on every write with the key without Keyv's
   * namespace; return undefined or [] for none. Tags live in the stack given to the adapter.
   */
  readonly tags?: KeyvTagsFor
  /**
   * What `keyv.disconnect()` does (`@nestjs/cache-manager` calls it when the module is destroyed).
   * Default: nothing, since the stack and its Redis clients are yours and may serve other code; pass
   * `() => { stack.close(); return redis.quit() }` when this Keyv owns them.
   */
  readonly disconnect?: () => void | Promise<void>
}
const OPTIONS = ['tags', 'disconnect'] as const

/** What the adapter needs of a CacheStack (a namespace view is one too). */
function assertStack(stack: unknown): CacheStack {
  const candidate = stack as Partial<CacheStack> | null | undefined
  if (
    candidate === null ||
    typeof candidate !== 'object' ||
    typeof candidate.get !== 'function' ||
    typeof candidate.mget !== 'function' ||
    typeof candidate.invalidateByPrefix !== 'function'
  ) {
    throw new InvalidOptionError('KeyvLayercache expects a CacheStack (or a namespace of one)')
  }
  return candidate as CacheStack
}

/**
 * A Keyv store on a CacheStack: `new Keyv({ store: new KeyvLayercache(stack) })`, and through Keyv,
 * cache-manager's `createCache({ stores: [keyv] })` and `@nestjs/cache-manager`. Reads and writes go
 * through the stack's layers (memory over Redis), so deletes reach every instance's memory over its
 * invalidation bus and `stack.invalidateByTag` / `invalidateByPrefix` remove entries Keyv wrote.
 *
 * Keys: Keyv's namespace (default `keyv`) is the start of every key, `namespace:key`, the same key
 * `stack.namespace(namespace)` reads as `key`; `clear()` removes that namespace only (all of the stack,
 * for a Keyv without a namespace). Values are stored as Keyv hands them over: by default the string Keyv
 * serialized, with its own expiry inside, so read them back through Keyv. One adapter per Keyv instance:
 * Keyv writes its namespace onto the store it is given.
 */
export class KeyvLayercache implements KeyvStoreAdapter {
  /** Read by Keyv (it has no iterator for this store: the stack lists no keys). */
  opts: Record<string, unknown> = { dialect: 'layercache' }
  /** Set by Keyv to its namespace. */
  namespace?: string | undefined
  /** The stack (or namespace view) this store reads and writes; tags given by `tags` live in it. */
  readonly stack: CacheStack
  private readonly tagsFor: KeyvTagsFor | undefined
  private readonly onDisconnect: (() => void | Promise<void>) | undefined

  constructor(stack: CacheStack, options: KeyvLayercacheOptions = {}) {
    this.stack = assertStack(stack)
    assertKnownOptions(options, OPTIONS, 'KeyvLayercache')
    if (options.tags !== undefined && typeof options.tags !== 'function') {
      throw new InvalidOptionError('KeyvLayercache: tags must be a function (key, namespace) => tags')
    }
    if (options.disconnect !== undefined && typeof options.disconnect !== 'function') {
      throw new InvalidOptionError('KeyvLayercache: disconnect must be a function')
    }
    this.tagsFor = options.tags
    this.onDisconnect = options.disconnect
  }

  /**
   * Keyv listens for its store's `error` events. This store never emits one: a failing call rejects with
   * the stack's typed error, which Keyv reports (its `error` event, or the error itself with
   * `throwOnErrors`).
   */
  on(_event: string, _listener: (...args: unknown[]) => void): this {
    return this
  }

  get<Value>(key: string): Promise<StoredData<Value> | undefined> {
    return this.stack.get<StoredData<Value>>(this.keyOf(key))
  }

  getMany<Value>(keys: string[]): Promise<StoredData<Value | undefined>[]> {
    return this.stack.mget<StoredData<Value>>(keys.map((key) => this.keyOf(key)))
  }

  async set(key: string, value: unknown, ttl?: number): Promise<boolean> {
    const full = this.keyOf(key)
    await this.stack.set(full, value, { ttl, tags: this.tagsOf(full) })
    return true
  }

  /** Writes every entry or none: the stack checks them all before it writes any. */
  async setMany(entries: { key: string; value: unknown; ttl?: number }[]): Promise<void> {
    await this.stack.mset(
      entries.map(({ key, value, ttl }) => {
        const full = this.keyOf(key)
        return { key: full, value, ttl, tags: this.tagsOf(full) }
      }),
    )
  }

  /**
   * Removes the key from every layer (and every instance's memory, with a bus). Resolves to whether it was
   * cached, as Keyv asks: that costs a `has` before the delete.
   */
  async delete(key: string): Promise<boolean> {
    const full = this.keyOf(key)
    const existed = await this.stack.has(full)
    await this.stack.delete(full)
    return existed
  }

  /** Removes the keys; resolves to whether any of them was cached (a `has` each first, as for delete). */
  async deleteMany(keys: string[]): Promise<boolean> {
    const fulls = keys.map((key) => this.keyOf(key))
    const existed = await Promise.all(fulls.map((full) => this.stack.has(full)))
    await this.stack.mdelete(fulls)
    return existed.includes(true)
  }

  has(key: string): Promise<boolean> {
    return this.stack.has(this.keyOf(key))
  }

  hasMany(keys: string[]): Promise<boolean[]> {
    return Promise.all(keys.map((key) => this.has(key)))
  }

  /** Removes Keyv's namespace (`invalidateByPrefix('namespace:')`), or the whole stack without one. */
  async clear(): Promise<void> {
    const namespace = this.namespace
    await this.stack.invalidateByPrefix(namespace ? `${namespace}:` : '')
  }

  async disconnect(): Promise<void> {
    await this.onDisconnect?.()
  }

  /**
   * The stack key of a Keyv key. Keyv prefixes `namespace:` itself unless `useKeyPrefix: false`; then the
   * store does, so that namespaces stay apart either way (a key already carrying it is left as it is,
   * as Keyv does).
   */
  private keyOf(key: string): string {
    const namespace = this.namespace
    if (!namespace || key.startsWith(`${namespace}:`)) return key
    return `${namespace}:${key}`
  }

  private tagsOf(full: string): readonly string[] | undefined {
    if (this.tagsFor === undefined) return undefined
    const namespace = this.namespace || undefined
    const key = namespace === undefined ? full : full.slice(namespace.length + 1)
    const tags = this.tagsFor(key, namespace)
    return tags === undefined || tags.length === 0 ? undefined : tags
  }
}

/**
 * A Keyv on `stack`: `new Keyv({ store: new KeyvLayercache(stack, options), namespace: 'keyv', ...keyv })`.
 * Pass it to cache-manager's `createCache({ stores: [createKeyv(stack)] })`, or use it as a Keyv.
 */
export function createKeyv(
  stack: CacheStack,
  options?: KeyvLayercacheOptions,
  keyvOptions: Omit<KeyvOptions, 'store'> = {},
): Keyv {
  return new Keyv({ namespace: 'keyv', ...keyvOptions, store: new KeyvLayercache(stack, options) })
}
