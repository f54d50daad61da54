// One app instance of the history checker: a CacheStack (memory over Redis, generations on) with a signed
// RedisInvalidationBus, and an EntityCache whose in-process stack has a bus of its own, over a data client
// with injected latency. It runs workload operations (updates write the database of record first) and lets
// the checker look into its memory layers. The same class runs in this process and in worker processes.
//
// The library is passed in (`library`), never imported here: test-utils is a dependency of every package,
// so it only refers to the umbrella package's types.
import type { Cluster, Redis } from 'ioredis'
import type * as Layercache from '../../../layercache/src/index'
import { historyNow } from './clock'
import { type DatabaseClient, isVersioned } from './database'
import { injectLatency, type LatencyHandle, type LatencyMode } from './latency'
import { Prng } from './prng'
import {
  ENTITY_TYPE,
  entityRow,
  type LoaderTiming,
  type Op,
  type ReadOp,
  tagsOf,
  type UpdateOp,
} from './workload'

export type CacheLibrary = typeof Layercache

export interface InstanceConfig {
  readonly name: string
  readonly topology: 'standalone' | 'cluster'
  /** Standalone: the server. */
  readonly redisUrl?: string
  /** Cluster: the startup nodes. */
  readonly clusterNodes?: readonly { host: string; port: number }[]
  /** Shared by every instance of a run: layer prefix, bus channels, entity key prefix. */
  readonly prefix: string
  readonly signingSecret: string
  readonly heartbeatMs: number
  readonly heartbeatTimeoutMs: number
  /** RedisLayer, EntityCache and bus publish timeouts, ms. */
  readonly commandTimeout: number
  readonly latency: { readonly maxMs: number; readonly mode: LatencyMode }
  /** Seeds this instance's latency stream. */
  readonly seed: string
  readonly memoryTtlMs: number
  /** gracefulDegradation on the stacks (bypass a failing Redis instead of throwing). */
  readonly degrade: boolean
}

/** What a read saw for one key: a version, a miss (null), or a description of a foreign value. */
export type Observed = number | null | string

export type OpOutcome =
  | {
      readonly ok: true
      /** Reads: what each key gave. */
      readonly observed?: readonly Observed[]
      /** Updates: the version each row of `op.rows` was bumped to. */
      readonly versions?: readonly number[]
      /** Updates: when the database write completed (the invalidation starts after). */
      readonly writtenAt?: number
      /** Updates with a racing read: its outcome. */
      readonly race?: OpOutcome
    }
  | {
      readonly ok: false
      readonly error: string
      /** Updates that wrote the database before failing. */
      readonly versions?: readonly number[]
      readonly race?: OpOutcome
    }

/** A loader's read of the database, reported to the recorder. */
export interface LoadReport {
  readonly instance: string
  readonly row: string
  /** When the loader was called. */
  readonly start: number
  /** When it read the database. */
  readonly readAt: number
  readonly version: number
  /** When it returned its value (the cache writes it back after). */
  readonly end: number
  /** What called it: the operation kind, or `refill` for a writeThrough reload. */
  readonly via: string
}

/** Both buses of an instance: health and counters by reason (summed). */
export interface BusState {
  readonly healthy: boolean
  readonly entityHealthy: boolean
  readonly rejected: Readonly<Record<string, number>>
  readonly unverified: Readonly<Record<string, number>>
}

/** What an instance's memory layers hold for the workload's keys (no Redis involved). */
export interface MemoryPeek {
  /** The generation this instance reads and writes now. */
  readonly generation: number | undefined
  /** By cache key / entity row. */
  readonly rows: Readonly<Record<string, Observed>>
  /** Rows whose entry a soft invalidation marked stale (only stale reads may answer them). */
  readonly stale?: readonly string[]
}

function observe(value: unknown, row: string): Observed {
  if (value === undefined || value === null) return null
  if (!isVersioned(value)) return `foreign value ${JSON.stringify(value)?.slice(0, 80)}`
  if (value.k !== row) return `value of ${value.k} (v${value.v})`
  return value.v
}

function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const code = (error as { code?: unknown }).code
  return `${error.name}${code === undefined ? '' : ` ${String(code)}`}: ${error.message}`
}

const sleep = (ms: number) => (ms <= 0 ? Promise.resolve() : new Promise((r) => setTimeout(r, ms)))

type AnyClient = Redis | Cluster

export class HistoryInstance {
  readonly stack: Layercache.CacheStack
  readonly entities: Layercache.EntityCache
  readonly bus: Layercache.RedisInvalidationBus
  readonly entityBus: Layercache.RedisInvalidationBus
  readonly latency: LatencyHandle
  readonly #memory: Layercache.MemoryLayer
  readonly #entityMemory: Layercache.MemoryLayer
  readonly #clients: AnyClient[]
  readonly #generationPrefix: (generation: number) => string
  #closed = false
  #loading = 0

  private constructor(
    readonly config: InstanceConfig,
    private readonly library: CacheLibrary,
    private readonly db: DatabaseClient,
    private readonly onLoad: (report: LoadReport) => void,
    ioredis: typeof import('ioredis'),
  ) {
    const connect = (subscriber: boolean): AnyClient => {
      const retryStrategy = () => 50
      if (config.topology === 'cluster') {
        const nodes = (config.clusterNodes ?? []).map((node) => ({ ...node }))
        return new ioredis.Cluster(nodes, {
          shardedSubscribers: subscriber,
          clusterRetryStrategy: retryStrategy,
          redisOptions: { maxRetriesPerRequest: 1 },
        })
      }
      return new ioredis.Redis(config.redisUrl!, { retryStrategy, maxRetriesPerRequest: 1 })
    }
    const client = connect(false)
    const subscriber = connect(true)
    const entitySubscriber = connect(true)
    this.#clients = [client, subscriber, entitySubscriber]
    for (const c of this.#clients) c.on('error', () => {})
    this.latency = injectLatency(client, {
      maxMs: config.latency.maxMs,
      mode: config.latency.mode,
      random: new Prng(config.seed).fork('latency'),
    })
    const busOptions = {
      publisher: client,
      signingSecret: config.signingSecret,
      heartbeatMs: config.heartbeatMs,
      heartbeatTimeoutMs: config.heartbeatTimeoutMs,
      publishTimeoutMs: config.commandTimeout,
    }
    this.bus = new library.RedisInvalidationBus({ ...busOptions, subscriber, channel: `${config.prefix}bus` })
    this.entityBus = new library.RedisInvalidationBus({
      ...busOptions,
      subscriber: entitySubscriber,
      channel: `${config.prefix}ebus`,
    })
    const degradation = config.degrade ? { gracefulDegradation: { retryAfterMs: 500 } } : {}
    this.#memory = new library.MemoryLayer({ ttl: config.memoryTtlMs, maxSize: 1000 })
    this.stack = new library.CacheStack(
      [
        this.#memory,
        new library.RedisLayer({
          client,
          prefix: `${config.prefix}kv:`,
          ttl: 60_000,
          commandTimeout: config.commandTimeout,
        }),
      ],
      { invalidationBus: this.bus, broadcastL1Invalidation: true, generation: 1, ...degradation },
    )
    this.#entityMemory = new library.MemoryLayer({ ttl: config.memoryTtlMs, maxSize: 1000 })
    const entityStack = new library.CacheStack([this.#entityMemory], {
      invalidationBus: this.entityBus,
      broadcastL1Invalidation: true,
    })
    this.entities = new library.EntityCache({
      redis: client,
      keyPrefix: `${config.prefix}ent`,
      stack: entityStack,
      commandTimeout: config.commandTimeout,
      entities: {
        [ENTITY_TYPE]: {
          id: 'id',
          ttl: 60_000,
          load: async (ids) => Promise.all(ids.map((id) => this.#loadRow(entityRow(id), 'entity load'))),
        },
      },
    })
    this.#generationPrefix = library.generationPrefix
  }

  /** Connects, subscribes both buses and waits until they hear themselves. */
  static async start(
    config: InstanceConfig,
    library: CacheLibrary,
    db: DatabaseClient,
    onLoad: (report: LoadReport) => void,
  ): Promise<HistoryInstance> {
    const ioredis = await import('ioredis')
    const instance = new HistoryInstance(config, library, db, onLoad, ioredis)
    await Promise.all([instance.bus.ready, instance.entityBus.ready])
    return instance
  }

  get name(): string {
    return this.config.name
  }

  /** Runs one workload operation; never rejects (failures are outcomes). */
  async perform(op: Op): Promise<OpOutcome> {
    if (op.type === 'update') return this.#update(op)
    // Bus messages already on the socket are applied first: a stalled event loop is not the bus's delay.
    await new Promise((resolve) => setImmediate(resolve))
    return this.#read(op)
  }

  /** What the memory layers hold for `keys` (cache keys) and `entityIds`, under the current generation. */
  peekMemory(keys: readonly string[], entityIds: readonly string[]): MemoryPeek {
    const generation = this.stack.generation
    const scope = generation === undefined ? '' : this.#generationPrefix(generation)
    const now = Date.now()
    const rows: Record<string, Observed> = {}
    const stale: string[] = []
    const look = (layer: Layercache.MemoryLayer, full: string, row: string) => {
      const entry = layer.get(full)
      rows[row] =
        entry === undefined || (entry.expiresAt !== 0 && entry.expiresAt <= now)
          ? null
          : observe(entry.value, row)
      if (rows[row] !== null && (entry as { expired?: true } | undefined)?.expired === true) stale.push(row)
    }
    for (const key of keys) look(this.#memory, scope + key, key)
    for (const id of entityIds) look(this.#entityMemory, `entities:e:${ENTITY_TYPE}:${id}`, entityRow(id))
    return { generation, rows, stale }
  }

  /** Bus health and counters, for reports. */
  busState(): BusState {
    const add = (into: Record<string, number>, from: Readonly<Record<string, number>>) => {
      for (const [reason, count] of Object.entries(from)) into[reason] = (into[reason] ?? 0) + count
    }
    const rejected: Record<string, number> = {}
    const unverified: Record<string, number> = {}
    for (const bus of [this.bus, this.entityBus]) {
      add(rejected, bus.stats.rejected)
      add(unverified, bus.stats.unverified)
    }
    return {
      healthy: this.bus.stats.healthy,
      entityHealthy: this.entityBus.stats.healthy,
      rejected,
      unverified,
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await Promise.allSettled([this.stack.close(), this.entities.close(), this.entities.stack.close()])
    await Promise.allSettled([this.bus.close(), this.entityBus.close()])
    this.latency.remove()
    for (const client of this.#clients) client.disconnect()
  }

  /** Loaders running now (background refreshes included): quiescence waits for none. */
  get loading(): number {
    return this.#loading
  }

  async #loadRow(row: string, via: string, timing: LoaderTiming = { before: 0, after: 0 }) {
    this.#loading++
    try {
      const start = historyNow()
      await sleep(timing.before)
      const readAt = historyNow()
      const version = await this.db.read(row)
      await sleep(timing.after)
      this.onLoad({ instance: this.name, row, start, readAt, version, end: historyNow(), via })
      return row.startsWith(`${ENTITY_TYPE}:`)
        ? { id: row.slice(ENTITY_TYPE.length + 1), k: row, v: version }
        : { k: row, v: version }
    } finally {
      this.#loading--
    }
  }

  async #read(op: ReadOp): Promise<OpOutcome> {
    const [key] = op.keys as [string]
    const [row] = op.rows as [string]
    const loader = () => this.#loadRow(row, op.kind, op.loader)
    const tags = tagsOf(key)
    try {
      switch (op.kind) {
        case 'get':
          return { ok: true, observed: [observe(await this.stack.get(key), row)] }
        case 'getOrSet':
          return { ok: true, observed: [observe(await this.stack.getOrSet(key, loader, { tags }), row)] }
        case 'getOrSetSlow': {
          // The slow loader names its tags from inside (ctx.setTags), as one deriving them from the row
          // would: the load's snapshot cannot know them.
          const tagging = async (ctx: { setTags(tags: readonly string[]): void }) => {
            const loaded = await loader()
            ctx.setTags(tags)
            return loaded
          }
          return { ok: true, observed: [observe(await this.stack.getOrSet(key, tagging), row)] }
        }
        case 'staleWhileRevalidate': {
          const options = { tags, ttl: 40, staleWhileRevalidate: 400 }
          return { ok: true, observed: [observe(await this.stack.getOrSet(key, loader, options), row)] }
        }
        case 'refreshAhead': {
          const options = { tags, ttl: 150, refreshAhead: 0.3 }
          return { ok: true, observed: [observe(await this.stack.getOrSet(key, loader, options), row)] }
        }
        case 'mget': {
          const values = await this.stack.mget(op.keys)
          return { ok: true, observed: values.map((value, i) => observe(value, op.rows[i]!)) }
        }
        case 'getOrSetMany': {
          // One database read per missing key, in parallel; each key tagged as a getOrSet would tag it.
          const values = await this.stack.getOrSetMany(op.keys, (keys, ctx) =>
            Promise.all(
              keys.map((key) => {
                ctx.setTags(key, tagsOf(key))
                return this.#loadRow(key, op.kind, op.loader)
              }),
            ),
          )
          return { ok: true, observed: values.map((value, i) => observe(value, op.rows[i]!)) }
        }
        case 'getEntity':
          return { ok: true, observed: [observe(await this.entities.getEntity(ENTITY_TYPE, key), row)] }
        case 'getOrLoadEntity': {
          const value = await this.entities.getOrLoadEntity(ENTITY_TYPE, key, () => loader())
          return { ok: true, observed: [observe(value, row)] }
        }
      }
    } catch (error) {
      return { ok: false, error: describeError(error) }
    }
  }

  async #update(op: UpdateOp): Promise<OpOutcome> {
    let versions: number[] | undefined
    let writtenAt: number | undefined
    const write = async () => {
      versions = op.repair
        ? await Promise.all(op.rows.map((row) => this.db.read(row)))
        : await this.db.bump(op.rows)
      writtenAt = historyNow()
      return versions
    }
    const value = (i: number) => {
      const row = op.rows[i]!
      return row.startsWith(`${ENTITY_TYPE}:`)
        ? { id: row.slice(ENTITY_TYPE.length + 1), k: row, v: versions![i]! }
        : { k: row, v: versions![i]! }
    }
    let race: Promise<OpOutcome> | undefined
    try {
      const viaWriteThrough = op.kind === 'writeThrough' || op.kind === 'writeThroughReload'
      if (!viaWriteThrough) await write()
      const invalidation = this.#invalidate(op, write, value)
      // The racing read starts once the invalidation has been issued, before it resolved.
      if (op.race !== undefined) race = this.#read(op.race)
      await invalidation
      return { ok: true, versions: versions!, writtenAt: writtenAt!, ...(race ? { race: await race } : {}) }
    } catch (error) {
      return {
        ok: false,
        error: describeError(error),
        ...(versions === undefined ? {} : { versions }),
        ...(race ? { race: await race } : {}),
      }
    }
  }

  /** Issues the cache call of an update (the database was written before, except for writeThrough). */
  async #invalidate(
    op: UpdateOp,
    write: () => Promise<unknown>,
    value: (i: number) => { k: string; v: number },
  ): Promise<void> {
    const stack = this.stack
    switch (op.kind) {
      case 'delete':
        return stack.delete(op.keys[0]!)
      case 'mdelete':
        return stack.mdelete(op.keys)
      case 'tag':
        await stack.invalidateByTag(op.tags![0]!)
        return
      case 'tagsAny':
        await stack.invalidateByTags(op.tags!, 'any')
        return
      case 'tagsAll':
        await stack.invalidateByTags(op.tags!, 'all')
        return
      case 'prefix':
        await stack.invalidateByPrefix(op.prefix!)
        return
      case 'pattern':
        await stack.invalidateByPattern(op.pattern!)
        return
      case 'generation':
        await stack.bumpGeneration()
        return
      case 'expire':
        return stack.expire(op.keys[0]!)
      case 'expireTag':
        await stack.expireByTag(op.tags![0]!)
        return
      case 'expirePrefix':
        await stack.expireByPrefix(op.prefix!)
        return
      case 'writeThrough':
      case 'writeThroughReload': {
        const key = op.keys[0]!
        const reload =
          op.kind === 'writeThroughReload'
            ? { reload: () => this.#loadRow(key, 'refill', op.loader), reloadOptions: { tags: tagsOf(key) } }
            : {}
        const slowWrite = async () => {
          await sleep(op.writeMs ?? 0)
          return write()
        }
        await this.library.writeThrough(stack, key, { write: slowWrite, ...reload })
        return
      }
      case 'set':
        return stack.set(op.keys[0]!, value(0), { tags: tagsOf(op.keys[0]!) })
      case 'mset':
        return stack.mset(op.keys.map((key, i) => ({ key, value: value(i), tags: tagsOf(key) })))
      case 'invalidateEntity':
        await this.entities.invalidateEntity(ENTITY_TYPE, op.keys[0]!)
        return
      case 'setEntity':
        return this.entities.setEntity(ENTITY_TYPE, value(0))
      case 'updateEntityIfExists':
        await this.entities.updateEntityIfExists(ENTITY_TYPE, value(0))
        return
    }
  }
}
