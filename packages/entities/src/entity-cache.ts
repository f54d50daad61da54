import {
  assertKnownOptions,
  assertPositiveInteger,
  CacheStack,
  checkClientReplies,
  InvalidOperationError,
  InvalidOptionError,
  InvalidValueError,
  isLocalLayer,
  LayerCacheError,
} from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import {
  type CLEAR_ALL_CONFIRMATION,
  type ClearAllCacheResult,
  clearAllCache,
  normalizePrefix,
} from '@layercache/layer-redis'
import type { Cluster, Redis } from 'ioredis'
import { EntityStore, type ReadFence, type RebuiltRow, type StoredRow } from './entity-store'
import { l1 } from './key-layout'
import { type ListParams, paramsKey } from './params-key'
import { RedisCalls } from './redis-calls'
import {
  type CheckedEntity,
  type CheckedIndexedList,
  type CheckedList,
  type CheckedPlainList,
  checkEntity,
  checkList,
  type EntitySchema,
  type ListSchema,
  normalizeId,
} from './schemas'

export interface EntityCacheOptions {
  /** Where rows, lists and memberships live: an ioredis Redis or Cluster (you own its lifecycle). */
  readonly redis: Redis | Cluster
  /**
   * Prepended to every key (a trailing ':' is added when missing); scopes `clearAllCache` to these keys.
   * Default '' (then `clearAllCache` is a FLUSHDB).
   */
  readonly keyPrefix?: string
  readonly entities: Readonly<Record<string, EntitySchema>>
  readonly lists?: Readonly<Record<string, ListSchema>>
  /**
   * The L1: a CacheStack of in-process layers (give it an `invalidationBus` so other instances drop what
   * this one invalidates). Default: one MemoryLayer of 10 000 entries kept at most 60 s, no bus.
   */
  readonly stack?: CacheStack
  /**
   * How long, in ms, invalidations fence work that began before them (tombstones live this long). Loads
   * and list rebuilds taking longer than half of it are returned but not cached. Default 60 000.
   */
  readonly fenceMs?: number
  /** Bound on every Redis call, ms (LayerTimeoutError past it). Default 2 000. */
  readonly commandTimeout?: number
  /** Whether `clearAllCache` also needs `allowProduction`. Default: NODE_ENV === 'production', at the call. */
  readonly productionMode?: boolean
}

const OPTIONS = [
  'redis',
  'keyPrefix',
  'entities',
  'lists',
  'stack',
  'fenceMs',
  'commandTimeout',
  'productionMode',
] as const

export interface PageOptions<T = unknown> {
  /** Rows to skip (highest scores first). Default 0. */
  readonly offset?: number
  /** Rows per page, 1 to 200. Default 20. */
  readonly limit?: number
  /** Rebuilds the list on a miss (instead of the schema's `load`). */
  readonly load?: (params: ListParams) => Promise<readonly T[]> | readonly T[]
}

export interface ListPage<T> {
  readonly items: readonly T[]
  /** Ids in the whole cached list (rows gone from Redis and your database may still be counted). */
  readonly total: number
}

export interface ClearAllOptions {
  readonly confirm: typeof CLEAR_ALL_CONFIRMATION
  readonly allowProduction?: boolean
}

export const MAX_PAGE_LIMIT = 200
const DEFAULT_PAGE_LIMIT = 20

/** Whether a load that began at `startedAt` still falls inside the fence window. */
function inWindow(startedAt: number, fenceMs: number): boolean {
  return performance.now() - startedAt < fenceMs / 2
}

/**
 * Fills the cache after a load answered: if Redis fails now, the answer stands and the cache just stays
 * empty (the next read loads again).
 */
async function fillQuietly<T>(write: Promise<T>): Promise<T | undefined> {
  try {
    return await write
  } catch (error) {
    if (error instanceof LayerCacheError) return undefined
    throw error
  }
}

function encode(value: unknown, what: string): string {
  let json: string | undefined
  try {
    json = JSON.stringify(value)
  } catch (error) {
    throw new InvalidValueError(`${what} cannot be stored as JSON: ${(error as Error).message}`)
  }
  if (json === undefined) throw new InvalidValueError(`${what} cannot be stored as JSON`)
  return json
}

/**
 * Rows (entities) and lists of rows on Redis, read through an in-process L1: `invalidateEntity` removes a
 * row and its id from every indexed list tracking membership, without anyone enumerating those lists.
 */
export class EntityCache {
  /** The L1 stack (its events and stats describe the in-process side). */
  readonly stack: CacheStack
  private readonly view: CacheStack
  private readonly store: EntityStore
  private readonly entities = new Map<string, CheckedEntity>()
  private readonly lists = new Map<string, CheckedList>()
  private readonly ownsStack: boolean
  private readonly rebuilds = new Map<string, Promise<{ rows: readonly unknown[]; written: boolean }>>()
  private readonly commandTimeout: number

  constructor(private readonly options: EntityCacheOptions) {
    assertKnownOptions(options, OPTIONS, 'EntityCache')
    const redis = options?.redis as Partial<Redis> | undefined
    if (redis === undefined || redis === null || typeof redis.evalsha !== 'function') {
      throw new InvalidOptionError('EntityCache: redis must be an ioredis Redis or Cluster')
    }
    checkClientReplies(redis, 'EntityCache', 'redis client')
    const prefix = normalizePrefix(options.keyPrefix)
    if (options.entities === null || typeof options.entities !== 'object') {
      throw new InvalidOptionError('EntityCache: entities must be an object of entity schemas')
    }
    for (const [type, schema] of Object.entries(options.entities)) {
      this.entities.set(type, checkEntity(type, schema))
    }
    for (const [name, schema] of Object.entries(options.lists ?? {})) {
      if (this.entities.has(name)) {
        throw new InvalidOptionError(`EntityCache: ${JSON.stringify(name)} is both an entity and a list`)
      }
      this.lists.set(name, checkList(name, schema, this.entities))
    }
    const fenceMs = assertPositiveInteger(options.fenceMs, 'fenceMs') ?? 60_000
    const timeout = assertPositiveInteger(options.commandTimeout, 'commandTimeout') ?? 2_000
    this.commandTimeout = timeout
    if (options.stack !== undefined) {
      if (!(options.stack instanceof CacheStack) || !options.stack.layers.every(isLocalLayer)) {
        throw new InvalidOptionError(
          'EntityCache: stack must be a CacheStack of in-process layers only (the rows already live in Redis)',
        )
      }
    }
    this.ownsStack = options.stack === undefined
    this.stack = options.stack ?? new CacheStack([new MemoryLayer({ ttl: 60_000, maxSize: 10_000 })])
    this.view = this.stack.namespace('entities')
    this.store = new EntityStore(new RedisCalls(options.redis, timeout), prefix, fenceMs, this.lists)
  }

  /** The normalised key prefix every Redis key starts with. */
  get keyPrefix(): string {
    return this.store.keys.prefix
  }

  // ------------------------------------------------------------------ entities

  /** The cached row (L1, then Redis), or undefined. Never calls your database. */
  async getEntity<T = unknown>(type: string, id: string | number): Promise<T | undefined> {
    const entity = this.entity(type)
    const key = normalizeId(id, type)
    // No tag: every change of a row drops its entry by key (dropRow).
    return this.view.getOrSet<T | undefined>(l1.entity(type, key), () => this.readOne<T>(entity, key), {
      ttl: entity.ttl,
    })
  }

  /**
   * The cached row, or the row from `loader` (default: the schema's `load`), cached unless an
   * invalidation or write of the row came in meanwhile. One load per row at a time on this instance.
   * While Redis is unavailable, answers from the loader without caching in Redis.
   */
  async getOrLoadEntity<T = unknown>(
    type: string,
    id: string | number,
    loader?: (id: string) => Promise<T | undefined> | T | undefined,
  ): Promise<T | undefined> {
    const entity = this.entity(type)
    const key = normalizeId(id, type)
    const load = loader ?? this.schemaLoader<T>(entity)
    if (typeof load !== 'function') {
      throw new InvalidOptionError(`getOrLoadEntity: ${type} has no load in its schema: pass a loader`)
    }
    return this.view.getOrSet<T | undefined>(
      l1.entity(type, key),
      () =>
        this.throughRedis<T>(
          () => this.store.readRows(entity, [key]).then((rows) => rows[0]!),
          async () => {
            const row = await load(key)
            if (row === undefined || row === null) return undefined
            if (entity.idOf(row) !== key) {
              throw new InvalidValueError(`getOrLoadEntity: the loader returned a ${type} with another id`)
            }
            return row
          },
          (row, { epoch, losses }) =>
            this.store.writeRowsFenced(entity, [{ id: key, json: encode(row, type), epoch, losses }]),
        ),
      { ttl: entity.ttl },
    )
  }

  /**
   * Rows by id, in order (undefined where neither the cache nor the schema's `load` has one). Reads L1,
   * then Redis in one round trip per node, then `load` once for the rest.
   */
  async getEntities<T = unknown>(
    type: string,
    ids: readonly (string | number)[],
  ): Promise<(T | undefined)[]> {
    const entity = this.entity(type)
    if (!Array.isArray(ids)) throw new InvalidValueError('getEntities: ids must be an array')
    const keys = ids.map((id) => normalizeId(id, type))
    return this.hydrate<T>(entity, keys)
  }

  /** Writes a row (Redis, then drops every L1 copy and cached page holding it, here and on peers). */
  async setEntity(type: string, row: unknown): Promise<void> {
    await this.writeEntity(type, row, false)
  }

  /**
   * Refreshes a row only if Redis holds it (atomically: a row invalidated a moment ago stays gone), and
   * re-scores it in the lists holding it. Returns whether it was cached.
   */
  updateEntityIfExists(type: string, row: unknown): Promise<boolean> {
    return this.writeEntity(type, row, true)
  }

  /**
   * Removes the row and its id from every indexed list with `trackMembership` that holds it (atomically
   * on a single Redis), and every L1 copy of them, here and on peers. Returns the row (0 or 1) plus the
   * number of lists it was removed from. When no list holds it, it costs what a delete costs: one script
   * on a single Redis; on a Cluster one more round trip if the type has indexed lists (their rebuilds'
   * counter).
   */
  async invalidateEntity(type: string, id: string | number): Promise<number> {
    const entity = this.entity(type)
    const key = normalizeId(id, type)
    let lists: readonly string[] = []
    try {
      const outcome = await this.store.invalidateRow(entity, key)
      lists = outcome.lists
      return outcome.deleted + outcome.removed
    } finally {
      await this.dropRow(entity, key, this.listTagsOf(lists))
    }
  }

  // ------------------------------------------------------------------ indexed lists

  /**
   * A page of an indexed list, highest scores first: L1, then Redis (ids) and the rows (L1, Redis, the
   * entity's `load`). A list Redis does not hold is rebuilt with `load` (the option, else the schema's);
   * without one, undefined.
   */
  async getListPage<T = unknown>(
    name: string,
    params: ListParams,
    options: PageOptions<T> = {},
  ): Promise<ListPage<T> | undefined> {
    const list = this.indexedList(name)
    const pk = paramsKey(params, name)
    assertKnownOptions(options, ['offset', 'limit', 'load'], 'getListPage')
    const offset = options.offset ?? 0
    if (!Number.isInteger(offset) || offset < 0 || offset >= list.maxSize) {
      throw new InvalidOptionError(`getListPage: offset must be a whole number from 0 to ${list.maxSize - 1}`)
    }
    const limit = assertPositiveInteger(options.limit, 'limit') ?? DEFAULT_PAGE_LIMIT
    if (limit > MAX_PAGE_LIMIT)
      throw new InvalidOptionError(`getListPage: limit is at most ${MAX_PAGE_LIMIT}`)
    const load = options.load ?? list.load
    if (load !== undefined && typeof load !== 'function') {
      throw new InvalidOptionError('getListPage: load must be a function')
    }
    const listTag = l1.listTag(name, pk)
    return this.view.getOrSet<ListPage<T> | undefined>(
      l1.page(name, pk, offset, limit),
      async (ctx) => {
        const read = await this.store.readPage(list, pk, offset, offset + limit - 1)
        if (read.cached) {
          const rows = await this.hydrate<T>(list.entity, read.ids)
          const items = rows.filter((row): row is Awaited<T> => row !== undefined) as T[]
          ctx.setTags([listTag, ...read.ids.map((id) => l1.entityTag(list.entity.type, id))])
          return { items, total: read.total }
        }
        if (load === undefined) return undefined
        const rows = (await this.rebuild(list, pk, params, load, read)) as T[]
        const items = rows.slice(offset, offset + limit)
        ctx.setTags([listTag, ...items.map((row) => l1.entityTag(list.entity.type, list.entity.idOf(row)))])
        return { items, total: rows.length }
      },
      { ttl: list.ttl }, // the loader tags what it caches
    )
  }

  /**
   * Adds a row to a cached indexed list (and writes the row). Returns false, changing no list, when Redis
   * does not hold the list (a partial list would pass for complete) or the row was invalidated after this
   * call began.
   */
  async addToList(name: string, params: ListParams, row: unknown): Promise<boolean> {
    const list = this.indexedList(name)
    const pk = paramsKey(params, name)
    const id = list.entity.idOf(row)
    const json = encode(row, list.entity.type)
    const score = list.scoreOf(row)
    this.checkScores(list.entity, row)
    try {
      return (await this.store.addToList(list, pk, id, row, json, score)) === 'added'
    } finally {
      await this.dropRow(list.entity, id, [l1.listTag(name, pk)])
    }
  }

  /** Removes an id from one cached indexed list (the row itself stays). Returns whether it was there. */
  async removeFromList(name: string, params: ListParams, id: string | number): Promise<boolean> {
    const list = this.indexedList(name)
    const pk = paramsKey(params, name)
    const key = normalizeId(id, list.entity.type)
    try {
      return await this.store.removeFromList(list, pk, key)
    } finally {
      await this.view.invalidateByTag(l1.listTag(name, pk))
    }
  }

  // ------------------------------------------------------------------ plain lists

  /** A cached plain list (L1, then Redis), or undefined. */
  async getList<T = unknown>(name: string, params: ListParams): Promise<T[] | undefined> {
    const list = this.plainList(name)
    const pk = paramsKey(params, name)
    return this.view.getOrSet<T[] | undefined>(
      l1.plainList(name, pk),
      async () => {
        const stored = await this.store.readPlain(name, pk)
        return stored.json === undefined ? undefined : (JSON.parse(stored.json) as T[])
      },
      { ttl: list.ttl, tags: [l1.listTag(name, pk)] },
    )
  }

  /**
   * A cached plain list, or the one `loader` (default: the schema's `load`) builds, cached unless
   * `deleteList` came in meanwhile.
   */
  async getOrLoadList<T = unknown>(
    name: string,
    params: ListParams,
    loader?: (params: ListParams) => Promise<readonly T[]> | readonly T[],
  ): Promise<T[]> {
    const list = this.plainList(name)
    const pk = paramsKey(params, name)
    const load = loader ?? (list.load as typeof loader)
    if (typeof load !== 'function') {
      throw new InvalidOptionError(`getOrLoadList: list ${name} has no load in its schema: pass a loader`)
    }
    return this.view.getOrSet<T[]>(
      l1.plainList(name, pk),
      async () =>
        (await this.throughRedis<T[]>(
          () => this.store.readPlain(name, pk),
          async () => this.checkedItems(name, await load(params)),
          (items, fence) => this.store.writePlain(name, pk, encode(items, name), list.ttl, fence),
        )) as T[],
      { ttl: list.ttl, tags: [l1.listTag(name, pk)] },
    )
  }

  /** Stores a plain list as given. */
  async setList(name: string, params: ListParams, items: readonly unknown[]): Promise<void> {
    const list = this.plainList(name)
    const pk = paramsKey(params, name)
    const json = encode(this.checkedItems(name, items), name)
    try {
      await this.store.writePlain(name, pk, json, list.ttl)
    } finally {
      await this.view.invalidateByTag(l1.listTag(name, pk))
    }
  }

  /**
   * Drops a cached list (plain or indexed) everywhere: Redis, this L1 and peers' (with a bus). A rebuild
   * in flight is not written. Returns 1 if Redis held it.
   */
  async deleteList(name: string, params: ListParams): Promise<number> {
    const list = this.list(name)
    const pk = paramsKey(params, name)
    try {
      return list.kind === 'plain'
        ? await this.store.deletePlain(name, pk)
        : await this.store.deleteIndexedList(list, pk)
    } finally {
      await this.view.invalidateByTag(l1.listTag(name, pk))
    }
  }

  // ------------------------------------------------------------------ everything

  /**
   * Wipes every key of this cache: SCAN + UNLINK of the prefixed keys (every master of a Cluster), or
   * FLUSHDB without a prefix; then this instance's L1 (and peers', with a bus). Needs
   * `confirm: 'YES_WIPE_ALL'`, and in production mode `allowProduction: true` (else InvalidOperationError,
   * before anything is touched).
   */
  async clearAllCache(options: ClearAllOptions): Promise<ClearAllCacheResult> {
    if (options === null || typeof options !== 'object') {
      throw new InvalidOperationError("clearAllCache needs { confirm: 'YES_WIPE_ALL' }")
    }
    assertKnownOptions(options, ['confirm', 'allowProduction'], 'clearAllCache')
    let refused = false
    try {
      return await clearAllCache({
        client: this.options.redis,
        keyPrefix: this.store.keys.prefix,
        confirm: options.confirm,
        commandTimeout: this.commandTimeout,
        ...(options.allowProduction === undefined ? {} : { allowProduction: options.allowProduction }),
        ...(this.options.productionMode === undefined ? {} : { productionMode: this.options.productionMode }),
      })
    } catch (error) {
      // A refused call touched nothing; a Redis failure midway may have removed some keys.
      refused = error instanceof InvalidOperationError || error instanceof InvalidOptionError
      throw error
    } finally {
      if (!refused) await this.view.invalidateByPrefix('')
    }
  }

  /** Closes the L1 stack when this cache created it (see CacheStack.close); idempotent. */
  async close(): Promise<void> {
    if (this.ownsStack) await this.stack.close()
  }

  /** `await using entities = new EntityCache(…)`: close() when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }

  // ------------------------------------------------------------------ internals

  private async writeEntity(type: string, row: unknown, onlyIfExists: boolean): Promise<boolean> {
    const entity = this.entity(type)
    const id = entity.idOf(row)
    const json = encode(row, type)
    this.checkScores(entity, row)
    let lists: readonly string[] = []
    try {
      const outcome = await this.store.writeRow(entity, id, json, row, onlyIfExists)
      lists = outcome.lists
      return outcome.written
    } finally {
      // The lists it was re-scored in: their pages' order changed, not only the pages holding it.
      await this.dropRow(entity, id, this.listTagsOf(lists))
    }
  }

  private entity(type: string): CheckedEntity {
    const entity = this.entities.get(type)
    if (entity === undefined) {
      throw new InvalidOptionError(
        `Unknown entity type ${JSON.stringify(type)} (known: ${[...this.entities.keys()].join(', ')})`,
      )
    }
    return entity
  }

  private list(name: string): CheckedList {
    const list = this.lists.get(name)
    if (list === undefined) {
      throw new InvalidOptionError(
        `Unknown list ${JSON.stringify(name)} (known: ${[...this.lists.keys()].join(', ')})`,
      )
    }
    return list
  }

  private indexedList(name: string): CheckedIndexedList {
    const list = this.list(name)
    if (list.kind !== 'indexed')
      throw new InvalidOperationError(`List ${name} is a plain list, not an indexed one`)
    return list
  }

  private plainList(name: string): CheckedPlainList {
    const list = this.list(name)
    if (list.kind !== 'plain')
      throw new InvalidOperationError(`List ${name} is an indexed list, not a plain one`)
    return list
  }

  private schemaLoader<T>(entity: CheckedEntity): ((id: string) => Promise<T | undefined>) | undefined {
    const load = entity.load
    if (load === undefined) return undefined
    return async (id) => {
      const rows = await load([id])
      return (rows as T[]).find((row) => row !== undefined && entity.idOf(row) === id)
    }
  }

  /** A row written to an indexed list must have a valid score for every indexed list of its type. */
  private checkScores(entity: CheckedEntity, row: unknown): void {
    for (const list of this.lists.values()) {
      if (list.kind === 'indexed' && list.entity === entity) list.scoreOf(row)
    }
  }

  private checkedItems<T>(name: string, items: readonly T[]): T[] {
    if (!Array.isArray(items)) throw new InvalidValueError(`list ${name}: the loader must return an array`)
    return items as T[]
  }

  /**
   * A read-through to Redis: the stored value, else `load`'s, written back unless the value's epoch moved
   * since the read, the client lost a connection since, or the load outlasted the fence window. While
   * Redis is unavailable, `load` alone.
   */
  private async throughRedis<T>(
    read: () => Promise<StoredRow>,
    load: () => Promise<T | undefined>,
    writeBack: (value: T, fence: ReadFence) => Promise<unknown>,
  ): Promise<T | undefined> {
    let stored: StoredRow
    try {
      stored = await read()
    } catch (error) {
      if (error instanceof LayerCacheError) return load()
      throw error
    }
    if (stored.json !== undefined) return JSON.parse(stored.json) as T
    const startedAt = performance.now()
    const value = await load()
    if (value !== undefined && inWindow(startedAt, this.store.fenceMs)) {
      await fillQuietly(writeBack(value, stored))
    }
    return value
  }

  private async readOne<T>(entity: CheckedEntity, id: string): Promise<T | undefined> {
    const [stored] = await this.store.readRows(entity, [id])
    return stored?.json === undefined ? undefined : (JSON.parse(stored.json) as T)
  }

  /** Rows by id: L1, then Redis, then the schema's load for the rest (written back, fenced). */
  private async hydrate<T>(entity: CheckedEntity, ids: readonly string[]): Promise<(T | undefined)[]> {
    const found = await this.view.mget<T>(ids.map((id) => l1.entity(entity.type, id)))
    const missing = ids.map((_, i) => i).filter((i) => found[i] === undefined)
    if (missing.length === 0) return found
    const stored = await this.store.readRows(
      entity,
      missing.map((i) => ids[i]!),
    )
    const toLoad: ({ index: number } & ReadFence)[] = []
    missing.forEach((index, j) => {
      const row = stored[j]!
      if (row.json !== undefined) found[index] = JSON.parse(row.json) as T
      else toLoad.push({ index, epoch: row.epoch, losses: row.losses })
    })
    if (toLoad.length === 0 || entity.load === undefined) return found
    const startedAt = performance.now()
    const loaded = await entity.load(toLoad.map(({ index }) => ids[index]!))
    if (!Array.isArray(loaded)) throw new InvalidValueError(`${entity.type} load must return an array`)
    const byId = new Map<string, unknown>()
    for (const row of loaded) if (row !== undefined && row !== null) byId.set(entity.idOf(row), row)
    const writes: ({ id: string; json: string } & ReadFence)[] = []
    for (const { index, epoch, losses } of toLoad) {
      const row = byId.get(ids[index]!)
      if (row === undefined) continue
      found[index] = row as T
      writes.push({ id: ids[index]!, json: encode(row, entity.type), epoch, losses })
    }
    if (writes.length > 0 && inWindow(startedAt, this.store.fenceMs)) {
      await fillQuietly(this.store.writeRowsFenced(entity, writes))
    }
    return found
  }

  /**
   * Rebuilds an indexed list with `load` (once per list at a time on this instance) and writes it to
   * Redis unless an invalidation or change overtook the rebuild. Returns the rows, ordered.
   *
   * A caller joining a rebuild in flight takes its rows only if they were written: rows that were not
   * may hold a row invalidated before this caller began (its page would bring the row back into L1),
   * so it rebuilds again, from its own read of the list's epoch (`since`: that epoch, and the connection
   * losses before it was read).
   */
  private async rebuild(
    list: CheckedIndexedList,
    pk: string,
    params: ListParams,
    load: (params: ListParams) => Promise<readonly unknown[]> | readonly unknown[],
    since: ReadFence,
  ): Promise<readonly unknown[]> {
    const flightKey = `${list.name}\u0000${pk}`
    const inFlight = this.rebuilds.get(flightKey)
    if (inFlight !== undefined) {
      const shared = await inFlight
      if (shared.written) return shared.rows
    }
    const work = this.rebuildOnce(list, pk, params, load, since)
    if (!this.rebuilds.has(flightKey)) {
      this.rebuilds.set(flightKey, work)
      void work.then(
        () => this.rebuilds.get(flightKey) === work && this.rebuilds.delete(flightKey),
        () => this.rebuilds.get(flightKey) === work && this.rebuilds.delete(flightKey),
      )
    }
    return (await work).rows
  }

  private async rebuildOnce(
    list: CheckedIndexedList,
    pk: string,
    params: ListParams,
    load: (params: ListParams) => Promise<readonly unknown[]> | readonly unknown[],
    since: ReadFence,
  ): Promise<{ rows: readonly unknown[]; written: boolean }> {
    const counter = await this.store.readCounter(list.entity)
    const startedAt = performance.now()
    const loaded = await load(params)
    if (!Array.isArray(loaded)) throw new InvalidValueError(`list ${list.name}: load must return an array`)
    const byId = new Map<string, RebuiltRow & { row: unknown }>()
    for (const row of loaded) {
      const id = list.entity.idOf(row)
      byId.set(id, { id, row, json: encode(row, list.entity.type), score: list.scoreOf(row) })
    }
    const ordered = [...byId.values()].sort((a, b) => b.score - a.score).slice(0, list.maxSize)
    if (!inWindow(startedAt, this.store.fenceMs)) return { rows: ordered.map((e) => e.row), written: false }
    const outcome = await fillQuietly(
      this.store.writeRebuilt(list, pk, ordered, since.epoch, counter, since.losses),
    )
    if (outcome === undefined) return { rows: ordered.map((e) => e.row), written: false }
    const { leftOut, refused } = outcome
    if (leftOut.size === 0 && refused.size === 0) {
      return { rows: ordered.map((e) => e.row), written: outcome.written }
    }
    // Rows changed while this rebuild ran: leave out the invalidated, answer the rewritten as Redis has
    // them now.
    const recheck = [...refused].filter((id) => !leftOut.has(id))
    const now = recheck.length === 0 ? [] : await fillQuietly(this.store.readRows(list.entity, recheck))
    const current = new Map<string, unknown>()
    recheck.forEach((id, i) => {
      const json = now?.[i]?.json
      if (json !== undefined) current.set(id, JSON.parse(json))
    })
    const rows: unknown[] = []
    for (const entry of ordered) {
      if (leftOut.has(entry.id)) continue
      if (!refused.has(entry.id)) rows.push(entry.row)
      else if (current.has(entry.id)) rows.push(current.get(entry.id))
    }
    return { rows, written: outcome.written }
  }

  /** Drops a row's L1 copy and every cached page holding it or of the lists named, here and on peers. */
  private dropRow(entity: CheckedEntity, id: string, listTags: readonly string[]): Promise<number> {
    return this.view.invalidate({
      keys: [l1.entity(entity.type, id)],
      tags: [l1.entityTag(entity.type, id), ...listTags],
    })
  }

  /** The L1 tags of indexed lists named by their Redis keys (from a membership). */
  private listTagsOf(listKeys: readonly string[]): string[] {
    const tags: string[] = []
    for (const listKey of listKeys) {
      const list = this.store.keys.listOf(listKey)
      if (list !== undefined) tags.push(l1.listTag(list.name, list.params))
    }
    return tags
  }
}
