import {
  assertKnownOptions,
  assertPositiveInteger,
  assertTtl,
  asUnavailable,
  bounded,
  type CacheEntry,
  type CacheLayer,
  type CommitWrite,
  checkClientReplies,
  coarseNow,
  effectiveTtl,
  type InvalidateKeysOptions,
  InvalidKeyError,
  InvalidOptionError,
  isReservedKey,
  type KeyMatch,
  type LayerCacheError,
  LayerTimeoutError,
  LayerUnavailableError,
  type LayerWrite,
  reservedKeyReason,
  type TagMatchMode,
  WriteFencedError,
} from '@layercache/core'
import type { Cluster, Redis } from 'ioredis'
import { AtomicRemoval } from './atomic-removal'
import { ConnectionGuard } from './connection-guard'
import { DeadlineQueue } from './deadline-queue'
import {
  type CompressionOptions,
  compressIfLarge,
  type EncodedValue,
  EntryDecoder,
  encodeEntry,
  readMaxValueBytes,
} from './envelope-codec'
import { type FencedItem, FencedWriter, LATE_CHECK, type RedisFence } from './fenced-write'
import { assertShardCount, TAG_SEPARATOR } from './index-layout'
import { normalizePrefix, scanPattern } from './key-prefix'
import { FENCE_AND_UNLINK_SCRIPT, NodeLossRecovery } from './node-loss'
import { groupBySlotOwner } from './pipeline-groups'
import { type Answer, ReadBatcher } from './read-batcher'
import { RedisClock } from './redis-clock'
import { RedisGeneration } from './redis-generation'
import type { CallDeadline, PipelineLike, RedisClient, RedisIO } from './redis-io'
import { DELETE_FENCE_MS, type PendingRead, RedisKeyIndex } from './redis-key-index'
import { RedisTagStore, tagSetPrefixOf } from './redis-tag-store'
import {
  COMPRESSED_MARKER,
  jsonSerializer,
  msgpackSerializer,
  resolveSerializer,
  type Serializer,
} from './serializer'
import { StaleMarker } from './stale-marker'
import { readTagIndexOptions } from './tag-index-options'

export type { RedisClient } from './redis-io'

// A plain write where its index entries cannot share its script (a Cluster): SETs the value (KEYS[1],
// ARGV[1], ttl ARGV[2] or '') and bumps its fence counter (KEYS[2], same slot, living ARGV[3] ms), so a
// load of the key that began before it, on any instance, does not write its older value back over it.
// Answers 0 without writing when it runs past its deadline (ARGV[4], this server's ms, '' none: see
// RedisClock): its caller was told it failed.
const SET_AND_FENCE = `
${LATE_CHECK('ARGV[4]', '0')}
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if ARGV[2] == '' then redis.call('SET', KEYS[1], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1`

// UNLINKs each key (KEYS) and answers 1 / 0 per key, in order.
const UNLINK_EACH_SCRIPT = `local removed = {}
for i, key in ipairs(KEYS) do removed[i] = redis.call('UNLINK', key) end
return removed`
const UNLINK_CHUNK = 500
// Moves the key's fence counter (same slot: see keyFenceOf) and unlinks the value, answering 1 / 0.
/** Below this many keys a plain pipeline of UNLINKs is as cheap. */
const UNLINK_SCRIPT_FROM = 16

interface PreparedWrite {
  readonly key: string
  readonly full: string
  readonly ttl: number | undefined
  readonly expiresAt: number
  readonly tags: readonly string[] | undefined
  /** Absent for a plain set; `null` when the load could not take one (its write-back is refused). */
  readonly fence: RedisFence | null | undefined
  readonly encoded: EncodedValue
  readonly stillValid: (() => boolean) | undefined
}

export interface RedisLayerOptions {
  /** An ioredis client: `new Redis(...)` (standalone or Sentinel) or `new Cluster(...)`. You own its lifecycle. */
  readonly client: RedisClient
  /** Layer name in stats and events. Default `redis`. */
  readonly name?: string
  /** Upper bound on entry lifetime here, in ms. Default: the entry's own TTL (none: no expiry). */
  readonly ttl?: number
  /** Prepended to every key; a trailing ':' is added when missing. Required for `clear()`. */
  readonly prefix?: string
  /** Default 'json'. Every instance sharing a prefix must use the same serializer. */
  readonly serializer?: 'json' | 'msgpack' | Serializer
  /** Compress large values with zlib; `true` uses the defaults (threshold 1024 bytes, level 6). */
  readonly compression?: boolean | CompressionOptions
  /** Every command is abandoned with LayerTimeoutError after this many ms. Default 1000. */
  readonly commandTimeout?: number
  /**
   * Serialised values larger than this are refused with OversizedValueError. Reads are capped alike: a
   * stored value over it, or a compressed one that would inflate past it, is not decoded but read as a
   * corrupt entry (a miss with a `corruptEntry` event). Default 16 MiB, at most 512 MiB.
   */
  readonly maxValueBytes?: number
  /**
   * Index every key so invalidateByPrefix / invalidateByPattern cost what they match (default true). Off:
   * writes are one SET each and those invalidations SCAN the whole keyspace instead.
   */
  readonly keyIndex?: boolean
  /**
   * Shards of the key index (1 to 1024, default 16), spread over a Cluster by a hash of the key. Every
   * instance uses the count recorded in Redis by the first one (a different one here gets a warning).
   */
  readonly knownKeysShards?: number
}
const OPTIONS = [
  'client',
  'name',
  'ttl',
  'prefix',
  'serializer',
  'compression',
  'commandTimeout',
  'maxValueBytes',
  'keyIndex',
  'knownKeysShards',
] as const

const JSON_MARKER = jsonSerializer.id.charCodeAt(0)
const UNLINK_BATCH = 500
/** Pipelines longer than this get `commandTimeout` per started slice of this many commands. */
const LONG_PIPELINE = 32

/** L2 on ioredis. Every command has a timeout; multi-key work is pipelined (per slot owner on Cluster). */
export class RedisLayer implements CacheLayer, RedisIO {
  readonly name: string
  readonly local = false as const
  readonly ttl: number | undefined
  readonly prefix: string
  readonly client: RedisClient
  readonly commandTimeout: number
  private readonly serializer: Serializer
  /** The first characters a value this layer wrote may start with (its envelope's format markers). */
  readonly valueMarkers: string
  private readonly decoder: EntryDecoder
  private readonly compression: Required<CompressionOptions> | undefined
  private readonly maxValueBytes: number
  readonly isCluster: boolean
  /** JSON without compression is read as a string: one less copy than Buffer + toString. */
  private readonly stringReads: boolean
  private readonly connection: ConnectionGuard
  private readonly deadlines: DeadlineQueue
  private readonly reads: ReadBatcher<string> | ReadBatcher<Buffer>
  private readonly tagStore = new RedisTagStore(this)
  private readonly keyIndex: RedisKeyIndex
  /** As given in the options (undefined: the default, or a tagIndex's). */
  private readonly knownKeysShards: number | undefined
  private readonly generation = new RedisGeneration(this)
  private readonly fencedWriter: FencedWriter
  private readonly clock: RedisClock
  private readonly nodeLoss: NodeLossRecovery
  private readonly atomicRemoval: AtomicRemoval
  private readonly staleMarker: StaleMarker

  constructor(options: RedisLayerOptions) {
    assertKnownOptions(options, OPTIONS, 'RedisLayer')
    const client = options?.client
    if (!client || typeof client !== 'object' || typeof client.get !== 'function') {
      throw new InvalidOptionError('RedisLayer: `client` must be an ioredis Redis or Cluster instance')
    }
    checkClientReplies(client, 'RedisLayer')
    if (options.name !== undefined && (typeof options.name !== 'string' || options.name === '')) {
      throw new InvalidOptionError('RedisLayer: name must be a non-empty string')
    }
    this.client = client
    this.isCluster = client.isCluster === true
    this.name = options.name ?? 'redis'
    this.ttl = assertTtl(options.ttl, 'RedisLayer ttl')
    this.prefix = normalizePrefix(options.prefix)
    this.serializer = resolveSerializer(options.serializer)
    this.valueMarkers = `[${COMPRESSED_MARKER}${msgpackSerializer.id}${this.serializer.id}`
    this.compression = resolveCompression(options.compression)
    this.commandTimeout = assertPositiveInteger(options.commandTimeout, 'RedisLayer commandTimeout') ?? 1000
    this.maxValueBytes = readMaxValueBytes(options.maxValueBytes, 'RedisLayer maxValueBytes')
    const readers = new Map(
      [jsonSerializer, msgpackSerializer, this.serializer].map((s) => [s.id, s] as [string, Serializer]),
    )
    this.decoder = new EntryDecoder(this.name, readers, this.maxValueBytes)
    this.stringReads = this.serializer === jsonSerializer && this.compression === undefined
    this.deadlines = new DeadlineQueue(this.name, this.commandTimeout)
    this.connection = new ConnectionGuard(client, this.name)
    this.reads = this.stringReads ? this.readBatcher(false) : this.readBatcher(true)
    if (options.keyIndex !== undefined && typeof options.keyIndex !== 'boolean') {
      throw new InvalidOptionError('RedisLayer: keyIndex must be a boolean')
    }
    this.knownKeysShards = assertShardCount(options.knownKeysShards, 'RedisLayer knownKeysShards')
    if (this.knownKeysShards !== undefined && options.keyIndex === false) {
      throw new InvalidOptionError('RedisLayer: knownKeysShards needs the key index (keyIndex: false)')
    }
    this.keyIndex = new RedisKeyIndex(this, options.keyIndex ?? true, {
      knownKeysShards: this.knownKeysShards,
      maxEntryTtl: this.ttl,
    })
    const connection = this.connection
    this.clock = new RedisClock(client, () => connection.losses)
    this.fencedWriter = new FencedWriter(
      this,
      this.keyIndex,
      this.tagStore,
      () => connection.losses,
      this.clock,
    )
    this.nodeLoss = new NodeLossRecovery(this, this.keyIndex, () => connection.losses)
    this.atomicRemoval = new AtomicRemoval(
      this,
      this.keyIndex,
      (tag) => this.tagStore.tagSetKey(tag),
      DELETE_FENCE_MS,
    )
    this.staleMarker = new StaleMarker(
      {
        readRaw: (full) => this.run('expire', full, this.sendGetBuffer),
        decode: (raw, full) => this.decoder.decode(raw, full),
        encode: (entry, full) =>
          compressIfLarge(
            encodeEntry(this.serializer, entry, entry.expiresAt, full, this.maxValueBytes),
            this.compression,
          ),
        fenceKeyOf: (full) => this.keyIndex.deletionKey(full),
        runScript: (operation, script, keys, args) =>
          this.run(operation, keys[0]!, (_key, deadline) => script.run(this.client, keys, args, deadline)),
      },
      DELETE_FENCE_MS,
    )
  }

  /** Batched: see ReadBatcher. */
  get(key: string): Promise<CacheEntry | undefined> {
    return this.reads.read(this.prefix + key)
  }

  async getMany(keys: readonly string[]): Promise<(CacheEntry | undefined)[]> {
    if (keys.length === 0) return []
    const fulls = keys.map((key) => this.prefix + key)
    // On a Cluster, one single-key MGET per key: like the standalone MGET it answers nil for a key of
    // another type, where a GET would fail the whole pipeline with WRONGTYPE.
    const raw: (Buffer | null)[] = this.isCluster
      ? (
          (await this.pipelineByKey('getMany', fulls, (pipe, key) =>
            pipe.mgetBuffer(key),
          )) as (Buffer | null)[][]
        ).map((reply) => reply[0] ?? null)
      : await this.run('getMany', '', () => (this.client as Redis).mgetBuffer(...fulls))
    return this.decoder.decodeMany(raw, fulls)
  }

  prepareWrites(writes: readonly LayerWrite[]): CommitWrite {
    const prepared = writes.map((write) => {
      const ttl = effectiveTtl(write.options?.ttl, this.ttl)
      const expiresAt = ttl === undefined ? 0 : Date.now() + ttl
      refuseReserved(write.key)
      const full = this.prefix + write.key
      const fence = write.options?.fences?.get(this.name) as RedisFence | null | undefined
      const encoded = encodeEntry(this.serializer, write.entry, expiresAt, full, this.maxValueBytes)
      return {
        key: write.key,
        full,
        ttl,
        expiresAt,
        tags: write.entry.tags,
        fence,
        encoded,
        stillValid: write.options?.stillValid,
      }
    })
    return () => this.commit(prepared)
  }

  /**
   * What had been invalidated as a load of `key` starts: its tags' epochs, the position of the group log
   * and the key's delete counter. Opaque to the stack, as the layer contract says: it comes back to this
   * layer in the write's `fences` (a RedisFence).
   */
  async fenceSnapshot(key: string, tags: readonly string[] | undefined): Promise<unknown> {
    const full = this.prefix + key
    const registering = this.nodeLoss.beforeFirstUse()
    if (registering !== undefined) await registering
    const losses = this.connection.losses
    const tagged = tags !== undefined && tags.length > 0
    const [[load, seen], recorded] = await Promise.all([
      this.keyIndex.snapshotWith(full, tagged ? tags.map((tag) => this.tagStore.epochKey(tag)) : []),
      // On one Redis the write script reads them itself (see FencedWriter).
      this.isCluster ? this.keyIndex.recordedTags([full]) : undefined,
    ])
    const epochs = tagged ? new Map(tags.map((tag, i) => [tag, seen[i] ?? '0'])) : undefined
    const fence: RedisFence = { epochs, load, recorded: recorded?.[0]?.join(TAG_SEPARATOR) ?? '', losses }
    return fence
  }

  /**
   * Keeps the key index where `tagIndex` (a RedisTagIndex) says: under its prefix, with its shard count
   * and page size, shared by every layer given it. Called by CacheStack for its `tagIndex` option, before
   * the layer's first operation; needs the layer's own client object and its key index.
   */
  useTagIndex(tagIndex: unknown): void {
    const config = readTagIndexOptions(tagIndex, `RedisLayer "${this.name}" tagIndex`)
    if (config.client !== this.client) {
      throw new InvalidOptionError(
        `RedisLayer "${this.name}": the tagIndex must use the same client object as the layer`,
      )
    }
    if (!this.keyIndex.enabled) {
      throw new InvalidOptionError(
        `RedisLayer "${this.name}": a tagIndex needs the key index (keyIndex: false)`,
      )
    }
    if (this.knownKeysShards !== undefined && this.knownKeysShards !== config.knownKeysShards) {
      throw new InvalidOptionError(
        `RedisLayer "${this.name}": knownKeysShards ${this.knownKeysShards} disagrees with the tagIndex's ` +
          `${config.knownKeysShards}; set it on the RedisTagIndex only`,
      )
    }
    this.keyIndex.configure({
      prefix: config.prefix,
      knownKeysShards: config.knownKeysShards,
      scanCount: config.scanCount,
    })
  }

  /** Removes every key `match` covers (through the key index, or SCAN without one); returns their keys. */
  invalidateKeys(match: KeyMatch, options?: InvalidateKeysOptions): Promise<string[]> {
    const batchSize = options?.batchSize
    if (!this.keyIndex.enabled) return this.keyIndex.invalidateByScan(match, batchSize)
    return this.afterNodeLossCheck(() => this.keyIndex.invalidate(match, batchSize))
  }

  /**
   * Soft invalidation: marks each key's entry stale in place, in one atomic step per key that also moves
   * its fence counter (loads of it that began earlier do not write back) and never writes a key that is
   * gone or changed meanwhile (see StaleMarker). Returns the keys it marked.
   */
  async expireKeys(keys: readonly string[]): Promise<string[]> {
    for (const key of keys) refuseReserved(key)
    const fulls = keys.map((key) => this.prefix + key)
    // The fences move before the entries are read: a load's write-back landing between the read and the
    // marking would make the marking fail as if a newer value had come, and stay fresh. (The tag and
    // prefix expiries move their epochs and log before they read, for the same reason.)
    await this.keyIndex.countDeletes(fulls)
    const marked = await this.markStale('expire', fulls)
    return keys.filter((_, i) => marked[i])
  }

  /** Soft invalidation of the values tagged with any (or all) of `tags`; see RedisTagStore.expire. */
  expireTags(tags: readonly string[], mode: TagMatchMode): Promise<string[]> {
    return this.afterNodeLossCheck(() => this.tagStore.expire(tags, mode))
  }

  /**
   * Soft invalidation of every key `match` covers, found through the key index (logged first, so loads in
   * flight are fenced as by a prefix invalidation). Without the key index the keys are removed instead.
   */
  expireMatching(match: KeyMatch): Promise<string[]> {
    if (!this.keyIndex.enabled) return this.invalidateKeys(match)
    return this.afterNodeLossCheck(() => this.keyIndex.invalidate(match, undefined, 'expire'))
  }

  /**
   * Marks `fulls` stale (StaleMarker); one that cannot be marked (its stale copy would pass
   * maxValueBytes) is removed instead. Answers, per key, whether it now holds a stale entry.
   */
  async markStale(operation: string, fulls: readonly string[]): Promise<boolean[]> {
    const outcomes = await this.staleMarker.mark(fulls, operation)
    const unmarkable = fulls.filter((_, i) => outcomes[i] === 'unmarkable')
    if (unmarkable.length > 0) await this.removeKeys(operation, unmarkable, undefined, true)
    return outcomes.map((outcome) => outcome === 'marked')
  }

  /** A named counter shared by every instance (`P~v:<name>`, no expiry: a reset would reuse versions). */
  async readCounter(name: string): Promise<number> {
    const value = await this.command('counter', (client) => client.get(`${this.prefix}~v:${name}`))
    return value === null ? 0 : Number(value)
  }

  incrementCounter(name: string): Promise<number> {
    return this.command('counter', (client) => client.incr(`${this.prefix}~v:${name}`))
  }

  /**
   * How many keys this layer's key index holds (0 with `keyIndex: false`): what the key-index size metric
   * of @layercache/opentelemetry and @layercache/prometheus reports. One ZCARD per index shard.
   */
  keyIndexSize(): Promise<number> {
    return this.keyIndex.size()
  }

  /** Records that entries with `dependsOn` exist (see RedisKeyIndex.markDependencies). */
  markDependencies(): Promise<void> {
    return this.keyIndex.markDependencies()
  }

  dependenciesMarked(): Promise<boolean> {
    return this.keyIndex.dependenciesMarked()
  }

  /** The counter every tag invalidation bumps (see RedisKeyIndex.tagCounterKey). */
  get tagCounterKey(): string {
    return this.keyIndex.tagCounterKey
  }

  /** The stack generation shared by every instance on this prefix (see CacheStack `generation`). */
  sharedGeneration(atLeast: number): Promise<number> {
    return this.generation.read(atLeast)
  }

  bumpSharedGeneration(atLeast: number): Promise<number> {
    return this.generation.bump(atLeast)
  }

  /** Removes every value tagged with any (or all) of `tags`; returns the keys removed. See RedisTagStore. */
  invalidateTags(tags: readonly string[], mode: TagMatchMode): Promise<string[]> {
    return this.afterNodeLossCheck(() => this.tagStore.invalidate(tags, mode))
  }

  /**
   * A group invalidation relies on index entries and tag sets that may sit on another Cluster master than
   * the values: confirmed before it starts and again before it resolves (see NodeLossRecovery).
   */
  private async afterNodeLossCheck(invalidate: () => Promise<string[]>): Promise<string[]> {
    await this.nodeLoss.confirm()
    const removed = await invalidate()
    await this.nodeLoss.confirm()
    return removed
  }

  /** Removes the key; a load of it that began earlier on any instance will not write back (delete counter). */
  async delete(key: string): Promise<void> {
    refuseReserved(key)
    await this.removeKeys('delete', [this.prefix + key], undefined, true)
  }

  async deleteMany(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return
    for (const key of keys) refuseReserved(key)
    await this.removeKeys(
      'deleteMany',
      keys.map((key) => this.prefix + key),
      undefined,
      true,
    )
  }

  /**
   * Removes keys with their index entries and tag memberships; returns, per key, whether a value was
   * removed. `read` holds memberships the caller read (a tag invalidation's own sets, by set key): every
   * key leaves those sets. `countDeletes` bumps the keys' fence counters (plain deletes), so a write-back
   * whose load began before is refused.
   *
   * On one Redis each chunk of keys goes in one atomic script (AtomicRemoval): index entries, memberships,
   * value and counter together, so no writer, load or other remover ever sees a key half-removed. Keys
   * whose tags writers kept changing under it are left to the multi-step removal below (removeInSteps),
   * which is also the Cluster's, where a key's entries live in other slots than its value.
   */
  async removeKeys(
    operation: string,
    fulls: readonly string[],
    read: ReadonlyMap<string, readonly string[]> = new Map(),
    countDeletes = false,
  ): Promise<boolean[]> {
    if (this.isCluster || fulls.length === 0) return this.removeInSteps(operation, fulls, read, countDeletes)
    const setPrefix = tagSetPrefixOf(this.prefix)
    const tags = [...read.keys()].map((setKey) => setKey.slice(setPrefix.length))
    const { removed, left } = await this.atomicRemoval.remove(operation, fulls, tags, countDeletes)
    if (left.length > 0) {
      const rest = await this.removeInSteps(
        operation,
        left.map((i) => fulls[i]!),
        read,
        countDeletes,
      )
      left.forEach((i, j) => {
        removed[i] = rest[j]!
      })
    }
    return removed
  }

  /**
   * The removal in steps, in the order that keeps concurrent writers and invalidators safe: (1) the index
   * entries are taken out and the keys marked pending, (2) the memberships go, (3) the values are unlinked,
   * (4) the keys are no longer pending. A writer whose entry or membership disappears before its check
   * unlinks its own value, and one that checked earlier wrote before the unlink; another invalidation that
   * no longer finds an entry or membership finds the key pending, so it never resolves while a value it
   * covers is still there. `countDeletes` bumps the keys' fence counters in step (1) on one Redis, whose
   * write-backs check everything in one script. On a Cluster every removal bumps them in step (3), in one
   * script with the unlink and after the entries and memberships went: a write-back (FencedWriter) whose
   * load began before the bump is refused, and one that began after it recorded its entries after they
   * were removed, so none is left untracked.
   */
  private async removeInSteps(
    operation: string,
    fulls: readonly string[],
    read: ReadonlyMap<string, readonly string[]>,
    countDeletes: boolean,
  ): Promise<boolean[]> {
    // On a Cluster the counters move with the unlink instead (see unlinkEach). A counter a full Redis
    // refuses (INCR needs memory; the removals free it) must not leave the value there once its index
    // entries went: the removal goes on, and the delete rejects at the end.
    const [forgotten, counted] = await Promise.allSettled([
      this.keyIndex.forget(fulls),
      countDeletes && !this.isCluster ? this.keyIndex.countDeletes(fulls) : undefined,
    ])
    if (forgotten.status === 'rejected') throw forgotten.reason
    const recorded = forgotten.value
    // The memberships the caller read, and those only the recorded tags name.
    const memberships = new Map<string, string[]>()
    for (const [setKey, members] of read) memberships.set(setKey, [...members])
    const setKeys = new Map<string, string>()
    recorded.forEach((tags, i) => {
      for (const tag of tags ?? []) {
        let setKey = setKeys.get(tag)
        if (setKey === undefined) {
          setKey = this.tagStore.tagSetKey(tag)
          setKeys.set(tag, setKey)
        }
        if (read.has(setKey)) continue
        const members = memberships.get(setKey)
        if (members === undefined) memberships.set(setKey, [fulls[i]!])
        else members.push(fulls[i]!)
      }
    })
    await this.tagStore.removeMemberships(memberships)
    const unlinked = await this.unlinkEach(operation, fulls)
    await this.keyIndex.release(fulls)
    if (counted.status === 'rejected') throw counted.reason
    return unlinked
  }

  /** Keys another invalidation is removing right now (see removeKeys), with their recorded tags. */
  pendingRemovals(): Promise<{ full: string; tags: readonly string[] }[]> {
    return this.keyIndex.pending()
  }

  /** The same read, to send after other commands of one pipeline (see RedisKeyIndex.pendingRead). */
  pendingRead(): Promise<PendingRead> {
    return this.keyIndex.pendingRead()
  }

  /**
   * UNLINKs the keys and tells, per key, whether it existed. On a standalone Redis one script per chunk
   * does it (a command per key costs Redis more to parse than the unlink itself); on a Cluster the keys
   * span slots, so it stays one command per key, pipelined per node.
   */
  private async unlinkEach(operation: string, fulls: readonly string[]): Promise<boolean[]> {
    if (this.isCluster) {
      const replies = await this.pipelineByKey(operation, fulls, (pipe, full) =>
        pipe.eval(FENCE_AND_UNLINK_SCRIPT, 2, full, this.keyIndex.deletionKey(full), DELETE_FENCE_MS),
      )
      return replies.map((reply) => reply === 1)
    }
    if (fulls.length < UNLINK_SCRIPT_FROM) {
      const replies = await this.pipelineByKey(operation, fulls, (pipe, full) => pipe.unlink(full))
      return replies.map((reply) => reply === 1)
    }
    const pipe = (this.client as Redis).pipeline()
    for (let at = 0; at < fulls.length; at += UNLINK_CHUNK) {
      const chunk = fulls.slice(at, at + UNLINK_CHUNK)
      pipe.eval(UNLINK_EACH_SCRIPT, chunk.length, ...chunk)
    }
    const replies = await this.execPipeline(operation, pipe)
    return replies.flatMap((reply) => (reply as number[]).map((removed) => removed === 1))
  }

  /** The tags each key's current value was written with (from the key index), before an overwrite. */
  recordedTags(fulls: readonly string[]): Promise<(readonly string[] | undefined)[]> {
    return this.keyIndex.recordedTags(fulls)
  }

  async has(key: string): Promise<boolean> {
    return (await this.run('has', this.prefix + key, (full) => this.client.exists(full))) === 1
  }

  /**
   * Removes every key under this layer's prefix (SCAN + UNLINK in batches, on every master of a Cluster).
   * Logged first, so loads in flight on any instance do not write back afterwards; the log, the shared
   * generation, the key version counters, the dependency mark and the record of Cluster masters survive.
   */
  async clear(): Promise<void> {
    if (this.prefix === '') {
      throw new InvalidOptionError(
        'RedisLayer.clear() needs a prefix: without one it would wipe unrelated keys',
      )
    }
    await this.keyIndex.logClear()
    const kept = new Set([
      this.keyIndex.logKey,
      this.generation.key,
      this.keyIndex.dependencyMarkKey,
      this.nodeLoss.registryKey,
      ...(await this.keyIndex.prepareClear()),
    ])
    const counters = `${this.prefix}~v:`
    await this.scanMasters('clear', scanPattern(this.prefix), UNLINK_BATCH, async (node, keys) => {
      // One UNLINK per key in a pipeline: on a Cluster a multi-key UNLINK across slots is refused.
      const pipe = node.pipeline()
      for (const key of keys) if (!kept.has(key) && !key.startsWith(counters)) pipe.unlink(key)
      if (pipe.length > 0) await this.execPipeline('clear', pipe)
    })
  }

  /** SCAN MATCH `pattern` over every master (the one node of a standalone Redis), a batch at a time. */
  async scanMasters(
    operation: string,
    pattern: string,
    count: number,
    onBatch: (node: Redis, keys: string[]) => Promise<unknown>,
  ): Promise<void> {
    const nodes: Redis[] = this.isCluster ? (this.client as Cluster).nodes('master') : [this.client as Redis]
    for (const node of nodes) {
      let cursor = '0'
      do {
        const [next, keys] = await this.run(operation, '', () =>
          node.scan(cursor, 'MATCH', pattern, 'COUNT', count),
        )
        cursor = next
        if (keys.length > 0 && (await onBatch(node, keys)) === 'stop') return
      } while (cursor !== '0')
    }
  }

  /** One command under the layer's timeout and error mapping (for the layer's index helpers). */
  command<T>(
    operation: string,
    send: (client: RedisClient, deadline: CallDeadline) => Promise<T>,
  ): Promise<T> {
    return this.run(operation, '', (_, deadline) => send(this.client, deadline))
  }

  /** One pipeline whose keys all live in one slot (the key index's); returns every reply. */
  onIndexNode(operation: string, add: (pipe: ReturnType<Redis['pipeline']>) => void): Promise<unknown[]> {
    const pipe = this.client.pipeline()
    add(pipe)
    return this.execPipeline(operation, pipe)
  }

  /** Reads as strings (JSON without compression: one copy less than Buffer + toString) or as Buffers. */
  private readBatcher(binary: boolean): ReadBatcher<string> | ReadBatcher<Buffer> {
    const shared = {
      client: this.client,
      isCluster: this.isCluster,
      binary,
      deadlines: this.deadlines,
      refusal: () => this.connection.refusal('get'),
      // A GET of a key holding another type: Redis answered, the entry is corrupt.
      failure: (error: unknown, full: string | undefined) =>
        (full !== undefined && this.decoder.wrongType(full, error)) || this.asUnavailable('get', error),
    }
    return binary
      ? new ReadBatcher<Buffer>({ ...shared, decode: this.decodeBinary })
      : new ReadBatcher<string>({ ...shared, decode: this.decodeText })
  }

  // Created once, so a read allocates no closures of its own.
  private readonly sendGetBuffer = (full: string) => this.client.getBuffer(full)

  private readonly decodeText = (text: string | null, full: string): Answer => {
    if (text === null) return undefined
    // A value written by an instance with another serializer: read it again in binary.
    return text.charCodeAt(0) === JSON_MARKER
      ? this.decoder.decodeText(text, full)
      : this.run('get', full, this.sendGetBuffer, this.decodeBinary)
  }

  private readonly decodeBinary = (data: Buffer | null, full: string): Answer =>
    data === null ? undefined : this.decoder.decode(data, full)

  private async commit(prepared: readonly PreparedWrite[]): Promise<void> {
    const failure = this.connection.refusal('set')
    if (failure) throw failure
    const registering = this.nodeLoss.beforeFirstUse()
    if (registering !== undefined) await registering
    const payloads =
      this.compression === undefined
        ? prepared.map((p) => p.encoded.payload)
        : await Promise.all(prepared.map((p) => compressIfLarge(p.encoded, this.compression)))
    // Checked after encoding and right before the commands leave, in the same tick as the send.
    const live: FencedItem[] = []
    // A load that could not take its fence snapshot (Redis was failing) cannot tell what was invalidated
    // here meanwhile: skip its write to Redis and say so, which leaves the in-process layers to the stack.
    const unfenced: string[] = []
    prepared.forEach((p, i) => {
      if (p.stillValid !== undefined && !p.stillValid()) return
      if (p.fence === null) unfenced.push(p.key)
      else {
        live.push({
          key: p.key,
          full: p.full,
          ttl: p.ttl,
          expiresAt: p.expiresAt,
          tags: p.tags,
          payload: payloads[i]!,
          fence: p.fence,
        })
      }
    })
    const refused: string[] = []
    if (!this.isCluster) {
      // One Redis: one script per write (plain or a load's write-back), the batch in one round trip.
      if (live.length > 0) refused.push(...(await this.fencedWriter.write(live)))
    } else {
      const loads: FencedItem[] = []
      const tagged: FencedItem[] = []
      const plain: FencedItem[] = []
      for (const item of live) {
        if (item.fence !== undefined) loads.push(item)
        else (item.tags !== undefined && item.tags.length > 0 ? tagged : plain).push(item)
      }
      await Promise.all([
        // A load's write-back checks and writes in one step: refused, it leaves nothing to read.
        loads.length > 0
          ? this.fencedWriter.write(loads).then((keys) => void refused.push(...keys))
          : undefined,
        plain.length > 0 ? this.writeIndexed(plain).then((keys) => refused.push(...keys)) : undefined,
        // Tagged values go through the tag store's fenced ordering, all of this commit's at once.
        tagged.length > 0
          ? this.tagStore
              .writeMany(
                tagged.map((item) => ({
                  key: item.key,
                  tags: item.tags!,
                  expiresAt: item.expiresAt,
                })),
                () => this.writeIndexed(tagged).then((keys) => void refused.push(...keys)),
              )
              .then((keys) => refused.push(...keys))
          : undefined,
      ])
    }
    if (refused.length > 0) throw new WriteFencedError([...new Set(refused)])
    if (unfenced.length > 0) {
      throw new LayerUnavailableError(
        this.name,
        `${this.name}: write-back of ${unfenced.length} key(s) skipped: their load could not read the ` +
          'invalidation state when it began',
      )
    }
  }

  /** The SETs, indexed and checked against group invalidations by the key index; returns refused keys. */
  private writeIndexed(items: readonly FencedItem[]): Promise<string[]> {
    return this.keyIndex.writeMany(
      items.map((item) => ({
        key: item.key,
        full: item.full,
        expiresAt: item.expiresAt,
        tags: item.tags,
      })),
      () => this.sendSets(items),
    )
  }

  /**
   * SET with PX for each item, with its fence counter bumped in the same step (SET_AND_FENCE), one
   * pipeline per slot owner (a Cluster: on one Redis every write is FencedWriter's script).
   */
  private async sendSets(items: readonly FencedItem[]): Promise<void> {
    const operation = items.length === 1 ? 'set' : 'setMany'
    const fulls = items.map((item) => item.full)
    const replies = await this.pipelineByKey(operation, fulls, (pipe, full, i, keysInPipe) => {
      const item = items[i]!
      // When the layer gives up on this pipeline (one command per key), taken before it is sent.
      const deadline = this.clock.deadlineOf(full, coarseNow() + this.timeoutOf(keysInPipe)) ?? ''
      pipe.eval(
        SET_AND_FENCE,
        2,
        full,
        this.keyIndex.deletionKey(full),
        item.payload,
        item.ttl ?? '',
        DELETE_FENCE_MS,
        deadline,
      )
    })
    if (replies.some((reply) => reply !== 1)) {
      // A server judged a set late while we were still waiting for it: its clock moved since we read it.
      this.clock.moved()
      throw new LayerTimeoutError(this.name, operation, this.commandTimeout)
    }
  }

  /**
   * Runs commands key by key in pipelines grouped by the node that owns each key's slot (one pipeline on
   * a standalone Redis), under the layer's timeout. `add` may queue several commands for a key; the reply
   * of the last one is returned for it, in key order.
   */
  async pipelineByKey(
    operation: string,
    keys: readonly string[],
    add: (pipe: ReturnType<Redis['pipeline']>, key: string, index: number, keysInPipe: number) => void,
  ): Promise<unknown[]> {
    const out: unknown[] = new Array(keys.length)
    if (keys.length === 0) return out
    const groups = this.isCluster
      ? groupBySlotOwner(this.client as Cluster, keys)
      : [keys.map((_, index) => index)]
    await Promise.all(
      groups.map(async (group) => {
        const pipe = this.client.pipeline()
        const lastReply: number[] = []
        for (const i of group) {
          add(pipe, keys[i]!, i, group.length)
          lastReply.push(pipe.length - 1)
        }
        const replies = await this.execPipeline(operation, pipe)
        group.forEach((keyIndex, j) => {
          out[keyIndex] = replies[lastReply[j]!]
        })
      }),
    )
    return out
  }

  timeoutOf(commands: number): number {
    return commands > LONG_PIPELINE
      ? this.commandTimeout * Math.ceil(commands / LONG_PIPELINE)
      : this.commandTimeout
  }

  async execPipeline(operation: string, pipe: PipelineLike): Promise<unknown[]> {
    return (await this.execPipelineSettled(operation, pipe)).map(([error, reply]) => {
      if (error) throw this.asUnavailable(operation, error)
      return reply
    })
  }

  async execPipelineSettled(operation: string, pipe: PipelineLike): Promise<[Error | null, unknown][]> {
    const results =
      pipe.length > LONG_PIPELINE
        ? await this.runLong(operation, pipe)
        : await this.run(operation, '', () => pipe.exec())
    if (results === null)
      throw new LayerUnavailableError(this.name, `${this.name}: ${operation} pipeline was aborted`)
    return results
  }

  /**
   * A long pipeline (a 100 000-key invalidation) is bounded too, by `commandTimeout` per started
   * LONG_PIPELINE commands: one busy Redis may need more than one command's budget for all of them.
   */
  private async runLong(operation: string, pipe: PipelineLike): Promise<[Error | null, unknown][] | null> {
    const failure = this.connection.refusal(operation)
    if (failure) throw failure
    const timeoutMs = this.timeoutOf(pipe.length)
    try {
      return await bounded(
        pipe.exec(),
        timeoutMs,
        () => new LayerTimeoutError(this.name, operation, timeoutMs),
      )
    } catch (error) {
      throw this.asUnavailable(operation, error)
    }
  }

  /**
   * Issues a command under the layer's timeout and maps every failure to a typed LayerCacheError.
   * `decode` runs inside the reply callback, so a read costs one promise, not a chain of them.
   */
  private run<T, R = T>(
    operation: string,
    key: string,
    command: (key: string, deadline: CallDeadline) => Promise<T>,
    decode?: (reply: T, key: string) => R | PromiseLike<R>,
  ): Promise<R> {
    const failure = this.connection.refusal(operation)
    if (failure) return Promise.reject(failure)
    return new Promise<R>((resolve, reject) => {
      const pending = this.deadlines.add(operation, reject)
      command(key, pending).then(
        (reply) => {
          if (pending.settled) return
          pending.settled = true
          if (decode === undefined) {
            resolve(reply as unknown as R)
            return
          }
          try {
            resolve(decode(reply, key))
          } catch (error) {
            reject(error)
          }
        },
        (error) => {
          if (pending.settled) return
          pending.settled = true
          // A read (it decodes) of a key holding another type: Redis answered, the entry is corrupt.
          reject(
            (decode !== undefined && this.decoder.wrongType(key, error)) ||
              this.asUnavailable(operation, error),
          )
        },
      )
    })
  }

  private asUnavailable(operation: string, error: unknown): LayerCacheError {
    return asUnavailable(this.name, operation, error)
  }
}

/**
 * Keys starting with '~' are this layer's own (index shards, tag sets, counters): a write or a delete of
 * one would corrupt them, whoever asks. CacheStack refuses them first; this guards direct callers.
 */
function refuseReserved(key: string): void {
  if (isReservedKey(key)) throw new InvalidKeyError(reservedKeyReason('key', key))
}

function resolveCompression(
  option: boolean | CompressionOptions | undefined,
): Required<CompressionOptions> | undefined {
  if (option === undefined || option === false) return undefined
  if (option === true) return { threshold: 1024, level: 6 }
  assertKnownOptions(option, ['threshold', 'level'], 'RedisLayer compression')
  const threshold = assertPositiveInteger(option.threshold, 'compression threshold') ?? 1024
  const level = option.level ?? 6
  if (!Number.isInteger(level) || level < 1 || level > 9) {
    throw new InvalidOptionError(`Invalid compression level ${String(level)}: expected 1 to 9`)
  }
  return { threshold, level }
}
