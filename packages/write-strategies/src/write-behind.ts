import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import {
  assertKey,
  assertKeyText,
  assertKnownOptions,
  assertPositiveInteger,
  assertTags,
  assertTtl,
  bounded,
  type CacheStack,
  checkClientReplies,
  diagnosticsChannels,
  InvalidOptionError,
  InvalidValueError,
  LayerCacheError,
  LayerUnavailableError,
  observe,
  observed,
  type SetOptions,
  type WriteBehindFlushContext,
} from '@layercache/core'
import type { Cluster, Redis } from 'ioredis'

/** One queued database write, as the writer receives it. */
export interface WriteBehindEntry<T = unknown> {
  /** Idempotency key: unique per `write()` call; the same entry may be delivered more than once. */
  readonly id: string
  readonly key: string
  readonly value: T
  /**
   * The Redis Stream id (`<ms>-<seq>`), assigned by Redis in queue order: a writer that must not let a
   * retried older write overwrite a newer one compares these (see `compareSequences`).
   */
  readonly sequence: string
  /** When it was queued (the writing host's clock; informational). */
  readonly queuedAt: number
  /** 1 on the first delivery; higher after failures or a takeover from a crashed instance. */
  readonly attempt: number
}

/** Writes a batch to the database. Must be idempotent per `entry.id` (at-least-once delivery). */
export type BatchWriter<T> = (entries: readonly WriteBehindEntry<T>[]) => Promise<void>

export interface WriteBehindOptions<T> {
  /** The cache updated at once by `write()`. */
  readonly cache: CacheStack
  /** ioredis client (standalone or Cluster) holding the queue. */
  readonly client: Redis | Cluster
  /** Queue name; its Redis keys are `lc:wb:{name}` and `lc:wb:{name}:dead` (one hash slot). */
  readonly queue: string
  readonly writer: BatchWriter<T>
  /** Entries handed to the writer at once. Default 100. */
  readonly batchSize?: number
  /** How often an idle instance polls the queue, in ms. Default 50. */
  readonly pollIntervalMs?: number
  /** Deliveries before an entry is dead-lettered. Default 5. */
  readonly maxAttempts?: number
  /** First retry delay in ms, doubled per attempt up to `maxRetryDelayMs`. Default 100. */
  readonly retryDelayMs?: number
  readonly maxRetryDelayMs?: number
  /** Keep only the newest entry per key within a batch (the others are acknowledged unwritten). */
  readonly coalesce?: boolean
  /** Back-pressure: `write()` waits while this many entries are queued. Default 10 000. */
  readonly maxQueueLength?: number
  /** How long `write()` waits for room before QueueFullError. Default 5 000 ms. */
  readonly enqueueTimeoutMs?: number
  /** Entries another instance has held unacknowledged this long are taken over. Default 30 000 ms. */
  readonly claimAfterMs?: number
  /** Consumer name in the group (unique per instance). Default host-pid-random. */
  readonly consumer?: string
  /** Every Redis command of the queue fails with LayerUnavailableError after this many ms. Default 2 000. */
  readonly commandTimeout?: number
}
const OPTIONS = [
  'cache',
  'client',
  'queue',
  'writer',
  'batchSize',
  'pollIntervalMs',
  'maxAttempts',
  'retryDelayMs',
  'maxRetryDelayMs',
  'coalesce',
  'maxQueueLength',
  'enqueueTimeoutMs',
  'claimAfterMs',
  'consumer',
  'commandTimeout',
] as const

/** `write()` found the queue full for longer than `enqueueTimeoutMs`: nothing was queued or cached. */
export class QueueFullError extends LayerCacheError {
  constructor(queue: string, length: number) {
    super('QUEUE_FULL', `Write-behind queue "${queue}" is full (${length} entries); nothing was written`)
  }
}

/** `flush()` did not drain the queue in time (the writer keeps failing or the queue keeps growing). */
export class FlushTimeoutError extends LayerCacheError {
  constructor(queue: string, left: number, ms: number) {
    super('FLUSH_TIMEOUT', `Write-behind queue "${queue}" still holds ${left} entries after ${ms} ms`)
  }
}

export interface WriteBehindStats {
  readonly queued: number
  readonly written: number
  readonly coalesced: number
  readonly batches: number
  readonly retries: number
  readonly deadLettered: number
  readonly claimed: number
  /** Entries in the queue when this instance last looked (all instances' writes). */
  readonly depth: number
  readonly lastFlushMs: number | undefined
}

export interface WriteBehindEvents<T> {
  flush: { count: number; ms: number }
  retry: { entries: readonly WriteBehindEntry<T>[]; error: unknown; retryInMs: number }
  deadLetter: { entry: WriteBehindEntry<T>; error: unknown }
  claim: { count: number }
  error: { operation: string; error: unknown }
}

const GROUP = 'layercache'

// XADD only while the stream is shorter than ARGV[1]; returns the new id, or the length when full.
const ENQUEUE_SCRIPT = `
local length = redis.call('XLEN', KEYS[1])
if length >= tonumber(ARGV[1]) then return length end
return redis.call('XADD', KEYS[1], '*', 'id', ARGV[2], 'key', ARGV[3], 'value', ARGV[4], 'at', ARGV[5])`

// Acknowledges and removes the entries ARGV[2..] of the stream KEYS[1] (group ARGV[1]) in one step: an
// entry acknowledged but left in the stream would never be delivered again, yet flush() would count it.
const ACKNOWLEDGE_SCRIPT = `
local removed = 0
for at = 2, #ARGV do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[at])
  removed = removed + redis.call('XDEL', KEYS[1], ARGV[at])
end
return removed`

// Moves entries from the stream KEYS[1] (group ARGV[1]) to the dead-letter stream KEYS[2]: per entry, its
// stream id and six fields (id, key, value, at, attempt, error) from ARGV[3] on, ARGV[2] fields each.
// An entry already gone from the stream (another consumer finished it) is skipped; returns 1 or 0 per
// entry. One script, so an entry leaves the queue only together with its dead letter: a refused XADD (a
// full Redis refuses the first write of a script that needs memory) aborts it before anything changed.
const DEAD_LETTER_SCRIPT = `
local result = {}
local width = tonumber(ARGV[2])
for at = 3, #ARGV, width do
  local streamId = ARGV[at]
  if #redis.call('XRANGE', KEYS[1], streamId, streamId) == 0 then
    result[#result + 1] = 0
  else
    redis.call('XADD', KEYS[2], '*', 'id', ARGV[at + 1], 'key', ARGV[at + 2], 'value', ARGV[at + 3],
      'at', ARGV[at + 4], 'attempt', ARGV[at + 5], 'sequence', streamId, 'error', ARGV[at + 6])
    redis.call('XACK', KEYS[1], ARGV[1], streamId)
    redis.call('XDEL', KEYS[1], streamId)
    result[#result + 1] = 1
  end
end
return result`
const DEAD_LETTER_WIDTH = 7

type StreamEntry = [string, string[]]

/**
 * A durable write-behind queue: `write()` queues the database write in a Redis Stream (acknowledged once
 * Redis has it) and updates the cache at once; every instance running `start()` is a consumer in one
 * group and hands batches to `writer`. An entry is removed only after the writer succeeded, so a crash
 * loses nothing: its pending entries are taken over by another instance after `claimAfterMs`. Failures
 * are retried with exponential backoff and dead-lettered after `maxAttempts` deliveries. Delivery is at
 * least once: the writer must be idempotent per `entry.id`.
 */
export class WriteBehind<T = unknown> {
  readonly queue: string
  readonly streamKey: string
  readonly deadLetterKey: string
  readonly consumer: string
  private readonly options: Required<Omit<WriteBehindOptions<T>, 'consumer' | 'coalesce'>> & {
    coalesce: boolean
  }
  private readonly listeners = new Map<keyof WriteBehindEvents<T>, ((event: never) => void)[]>()
  private timer: NodeJS.Timeout | undefined
  /** Rounds run one at a time (the background loop and flush() share it). */
  private rounds: Promise<void> = Promise.resolve()
  /** Failed deliveries per entry seen by this instance (the group's delivery count may not include them). */
  private readonly failures = new Map<string, number>()
  private groupReady: Promise<void> | undefined
  private retryAt = 0
  private stopped = true
  /** The close() in progress or done, so closing twice waits for the same drain. */
  private closing: Promise<void> | undefined
  private everReady: boolean
  private readonly counters = {
    queued: 0,
    written: 0,
    coalesced: 0,
    batches: 0,
    retries: 0,
    deadLettered: 0,
    claimed: 0,
    depth: 0,
    lastFlushMs: undefined as number | undefined,
  }

  constructor(options: WriteBehindOptions<T>) {
    assertKnownOptions(options, OPTIONS, 'WriteBehind')
    if (!options?.cache || typeof options.cache.set !== 'function') {
      throw new InvalidOptionError('WriteBehind: `cache` must be a CacheStack')
    }
    if (!options.client || typeof options.client.xadd !== 'function') {
      throw new InvalidOptionError('WriteBehind: `client` must be an ioredis Redis or Cluster instance')
    }
    checkClientReplies(options.client, 'WriteBehind')
    if (typeof options.writer !== 'function') {
      throw new InvalidOptionError('WriteBehind: `writer` must be a function')
    }
    this.queue = assertKeyText(options.queue, 'write-behind queue name')
    if (/[{}]/.test(this.queue)) throw new InvalidOptionError('WriteBehind: queue names cannot hold { or }')
    this.streamKey = `lc:wb:{${this.queue}}`
    this.deadLetterKey = `lc:wb:{${this.queue}}:dead`
    this.consumer =
      options.consumer === undefined
        ? `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`
        : consumerName(options.consumer)
    const positive = (value: unknown, what: string, fallback: number) =>
      assertPositiveInteger(value, `WriteBehind ${what}`) ?? fallback
    if (options.coalesce !== undefined && typeof options.coalesce !== 'boolean') {
      throw new InvalidOptionError('WriteBehind: coalesce must be a boolean')
    }
    this.options = {
      cache: options.cache,
      client: options.client,
      queue: this.queue,
      writer: options.writer,
      batchSize: positive(options.batchSize, 'batchSize', 100),
      pollIntervalMs: positive(options.pollIntervalMs, 'pollIntervalMs', 50),
      maxAttempts: positive(options.maxAttempts, 'maxAttempts', 5),
      retryDelayMs: positive(options.retryDelayMs, 'retryDelayMs', 100),
      maxRetryDelayMs: positive(options.maxRetryDelayMs, 'maxRetryDelayMs', 10_000),
      coalesce: options.coalesce ?? false,
      maxQueueLength: positive(options.maxQueueLength, 'maxQueueLength', 10_000),
      enqueueTimeoutMs: positive(options.enqueueTimeoutMs, 'enqueueTimeoutMs', 5_000),
      claimAfterMs: positive(options.claimAfterMs, 'claimAfterMs', 30_000),
      commandTimeout: positive(options.commandTimeout, 'commandTimeout', 2_000),
    }
    this.everReady = options.client.status === 'ready'
    if (!this.everReady) {
      options.client.once('ready', () => {
        this.everReady = true
      })
    }
  }

  /**
   * Queues the database write of `value` for `key`, then updates the cache. Resolves once Redis holds the
   * write (it will reach the writer even if this process dies); returns its idempotency key.
   */
  async write(key: string, value: T, options?: SetOptions): Promise<{ id: string }> {
    assertKey(key)
    // Everything the cache would refuse is refused before anything is queued.
    assertKnownOptions(options, ['ttl', 'tags', 'dependsOn'], 'write-behind write')
    assertTtl(options?.ttl)
    assertTags(options?.tags)
    if (options?.dependsOn !== undefined) {
      if (!Array.isArray(options.dependsOn))
        throw new InvalidOptionError('dependsOn must be an array of keys')
      for (const dependency of options.dependsOn) assertKey(dependency, 'dependsOn key')
    }
    if (value === undefined) throw new InvalidValueError('write-behind cannot queue undefined; use null')
    let json: string | undefined
    try {
      json = JSON.stringify(value)
    } catch (error) {
      throw new InvalidValueError(`write-behind value of "${key}" is not JSON-serialisable: ${error}`)
    }
    if (json === undefined) {
      throw new InvalidValueError(`write-behind value of "${key}" has no JSON form (a function or symbol?)`)
    }
    this.refuseWhileDisconnected()
    const id = `${Date.now().toString(36)}-${randomBytes(8).toString('hex')}`
    const deadline = Date.now() + this.options.enqueueTimeoutMs
    for (;;) {
      let reply: unknown
      try {
        reply = await this.redis('enqueue', (client) =>
          client.eval(
            ENQUEUE_SCRIPT,
            1,
            this.streamKey,
            this.options.maxQueueLength,
            id,
            key,
            json,
            Date.now(),
          ),
        )
      } catch (error) {
        // A command that timed out or lost its connection may still land: the database could get this
        // value, so the cache must not keep serving the previous one. A command Redis answered with an
        // error (a full Redis refuses the script before its first write) queued nothing: the cache keeps
        // what it has, which entries still queued for the database may be behind.
        if (!answeredWithError(error)) {
          await this.options.cache
            .delete(key)
            .catch((cleanup: unknown) =>
              this.emit('error', { operation: 'write cache delete', error: cleanup }),
            )
        }
        throw error
      }
      if (typeof reply === 'string') break
      this.counters.depth = Number(reply)
      if (Date.now() >= deadline) throw new QueueFullError(this.queue, Number(reply))
      await sleep(Math.min(this.options.pollIntervalMs, 20))
    }
    this.counters.queued++
    try {
      await this.options.cache.set(key, value as unknown, options)
    } catch (error) {
      // The database will get the value; the cache must not keep an older one meanwhile. When even the
      // delete fails, the cache may serve the older value until its TTL: say so.
      await this.options.cache
        .delete(key)
        .catch((cleanup: unknown) => this.emit('error', { operation: 'write cache delete', error: cleanup }))
      throw error
    }
    return { id }
  }

  /** Starts consuming: this instance hands batches to the writer (and takes over crashed instances'). */
  start(): this {
    if (!this.stopped) return this
    this.stopped = false
    this.closing = undefined
    this.schedule(0)
    return this
  }

  /**
   * Writes everything queued now (by any instance) and resolves when the queue is empty, or rejects with
   * FlushTimeoutError after `timeoutMs` (default 30 s). Works whether or not `start()` was called.
   */
  async flush(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      await this.round(true)
      const left = await this.redis('queue length', (client) => client.xlen(this.streamKey))
      this.counters.depth = left
      if (left === 0) return
      if (Date.now() >= deadline) throw new FlushTimeoutError(this.queue, left, timeoutMs)
      await sleep(Math.max(1, Math.min(this.retryAt - Date.now(), this.options.pollIntervalMs)))
    }
  }

  /**
   * Stops consuming; with `drain` (default) flushes first, so nothing this instance queued is left.
   * Idempotent: a second call answers the first one's promise (until `start()` again).
   */
  close(options: { drain?: boolean; timeoutMs?: number } = {}): Promise<void> {
    this.closing ??= this.closeNow(options)
    return this.closing
  }

  /** `await using queue = new WriteBehind(…)`: close() with its defaults (drain) when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }

  private async closeNow({ drain = true, timeoutMs = 30_000 }: { drain?: boolean; timeoutMs?: number }) {
    try {
      if (drain) await this.flush(timeoutMs)
    } finally {
      this.stopped = true
      clearTimeout(this.timer)
      await this.rounds
    }
  }

  /** Entries that exhausted their attempts, newest last (for inspection and replay). */
  async deadLetters(count = 100): Promise<(WriteBehindEntry<T> & { error: string })[]> {
    const entries = (await this.redis('dead letters', (client) =>
      client.xrange(this.deadLetterKey, '-', '+', 'COUNT', count),
    )) as StreamEntry[]
    return entries.map(([, fields]) => {
      const f = fieldsOf(fields)
      return {
        ...this.entryOf(f, Number(f.attempt ?? '0'), f.sequence ?? ''),
        error: f.error ?? '',
      }
    })
  }

  stats(): WriteBehindStats {
    return { ...this.counters }
  }

  on<K extends keyof WriteBehindEvents<T>>(name: K, listener: (event: WriteBehindEvents<T>[K]) => void) {
    const list = this.listeners.get(name) ?? []
    list.push(listener as (event: never) => void)
    this.listeners.set(name, list)
    return () => {
      const at = list.indexOf(listener as (event: never) => void)
      if (at !== -1) list.splice(at, 1)
    }
  }

  private emit<K extends keyof WriteBehindEvents<T>>(name: K, event: WriteBehindEvents<T>[K]): void {
    for (const listener of this.listeners.get(name) ?? []) {
      try {
        ;(listener as (event: WriteBehindEvents<T>[K]) => void)(event)
      } catch {
        // A listener's failure never stops the queue.
      }
    }
  }

  private schedule(delay: number): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.round(false)
        .catch((error: unknown) => this.emit('error', { operation: 'consume', error }))
        .finally(() => this.schedule(this.options.pollIntervalMs))
    }, delay)
    this.timer.unref?.()
  }

  private round(eager: boolean): Promise<void> {
    const next = this.rounds.then(() => this.tick(eager))
    this.rounds = next.catch(() => {})
    return next
  }

  /**
   * One round: take over entries crashed consumers left pending, retry own failures once due, then read
   * new entries; each batch goes to the writer. `eager` (flush) retries own failures without waiting.
   */
  private async tick(eager: boolean): Promise<void> {
    try {
      await this.consume(eager)
    } catch (error) {
      // Redis lost the stream (restart without persistence, flush): a later write() recreated it without
      // the group. Create the group again on the next round; it delivers everything from the start.
      if (String((error as Error)?.message).includes('NOGROUP')) this.groupReady = undefined
      throw error
    }
  }

  private async consume(eager: boolean): Promise<void> {
    await this.ensureGroup()
    const { batchSize, claimAfterMs } = this.options
    const claimed = (await this.redis('claim', (client) =>
      client.xautoclaim(this.streamKey, GROUP, this.consumer, claimAfterMs, '0-0', 'COUNT', batchSize),
    )) as [string, StreamEntry[], string[]?]
    const taken = claimed[1].filter((entry) => entry !== null && entry[1] !== null)
    if (taken.length > 0) {
      this.counters.claimed += taken.length
      this.emit('claim', { count: taken.length })
      await this.process(taken)
    }
    if (eager || Date.now() >= this.retryAt) {
      // Own pending entries (earlier failures, or an aborted batch) are delivered again from the start.
      await this.readGroup('0')
    }
    await this.readGroup('>')
    this.counters.depth = await this.redis('queue length', (client) => client.xlen(this.streamKey))
  }

  private async readGroup(from: '0' | '>'): Promise<void> {
    for (;;) {
      const reply = (await this.redis('read', (client) =>
        client.xreadgroup(
          'GROUP',
          GROUP,
          this.consumer,
          'COUNT',
          this.options.batchSize,
          'STREAMS',
          this.streamKey,
          from,
        ),
      )) as [string, StreamEntry[]][] | null
      const entries = reply?.[0]?.[1]?.filter((entry) => entry[1] !== null) ?? []
      if (entries.length === 0) return
      const ok = await this.process(entries)
      // Re-reading own pending entries stops at the first failure (they wait for their retry time).
      if (!ok || entries.length < this.options.batchSize) return
    }
  }

  /** Hands a batch to the writer; acknowledges and removes it on success. Returns whether it succeeded. */
  private async process(raw: readonly StreamEntry[]): Promise<boolean> {
    const deliveries = await this.deliveryCounts(raw.map(([streamId]) => streamId))
    const all: { streamId: string; entry: WriteBehindEntry<T> }[] = []
    const unreadable: { streamId: string; entry: WriteBehindEntry<T> }[] = []
    for (const [streamId, fields] of raw) {
      const attempt = Math.max(deliveries.get(streamId) ?? 1, (this.failures.get(streamId) ?? 0) + 1)
      try {
        all.push({ streamId, entry: this.entryOf(fieldsOf(fields), attempt, streamId) })
      } catch (error) {
        // Written by something else, or damaged: it can never be written, and must not block the queue.
        const f = fieldsOf(fields)
        const entry = { id: f.id ?? '', key: f.key ?? '', sequence: streamId, queuedAt: 0, attempt }
        unreadable.push({ streamId, entry: { ...entry, value: undefined as T } })
        this.emit('error', { operation: 'read entry', error })
      }
    }
    let refused: { error: unknown } | undefined
    if (unreadable.length > 0) {
      try {
        await this.deadLetter(unreadable, new InvalidValueError('entry has no readable value'))
      } catch (error) {
        // They stay pending and are tried again; the readable entries are written meanwhile.
        refused = { error }
      }
    }
    const ok = await this.writeBatch(all)
    if (refused !== undefined) throw refused.error
    return ok
  }

  /** Hands readable entries to the writer; acknowledges and removes them on success. */
  private writeBatch(all: readonly { streamId: string; entry: WriteBehindEntry<T> }[]): Promise<boolean> {
    if (all.length === 0) return Promise.resolve(true)
    let batch = all
    if (this.options.coalesce) {
      const newest = new Map<string, (typeof all)[number]>()
      for (const item of all) newest.set(item.entry.key, item)
      batch = [...newest.values()]
    }
    if (!observed(diagnosticsChannels.writeBehindFlush)) return this.writeNow(all, batch, undefined)
    const context: WriteBehindFlushContext = {
      operation: 'writeBehind.flush',
      queue: this.queue,
      received: all.length,
      count: batch.length,
    }
    return observe(diagnosticsChannels.writeBehindFlush, context, () => this.writeNow(all, batch, context))
  }

  private async writeNow(
    all: readonly { streamId: string; entry: WriteBehindEntry<T> }[],
    batch: readonly { streamId: string; entry: WriteBehindEntry<T> }[],
    context: WriteBehindFlushContext | undefined,
  ): Promise<boolean> {
    const started = performance.now()
    try {
      await this.options.writer(batch.map((item) => item.entry))
    } catch (error) {
      if (context !== undefined) context.outcome = 'failed'
      await this.failed(all, error, context)
      return false
    }
    await this.acknowledge(all.map((item) => item.streamId))
    const ms = performance.now() - started
    this.counters.coalesced += all.length - batch.length
    this.counters.written += batch.length
    this.counters.batches++
    this.counters.lastFlushMs = ms
    if (context !== undefined) context.outcome = 'written'
    this.emit('flush', { count: batch.length, ms })
    return true
  }

  private async failed(
    items: readonly { streamId: string; entry: WriteBehindEntry<T> }[],
    error: unknown,
    context?: WriteBehindFlushContext,
  ): Promise<void> {
    const { maxAttempts } = this.options
    const exhausted = items.filter((item) => item.entry.attempt >= maxAttempts)
    const again = items.filter((item) => item.entry.attempt < maxAttempts)
    if (context !== undefined) {
      context.retried = again.length
      context.deadLettered = exhausted.length
    }
    for (const { streamId, entry } of items) this.failures.set(streamId, entry.attempt)
    if (again.length > 0) {
      const retryInMs = this.retryDelay(again)
      this.retryAt = Date.now() + retryInMs
      this.counters.retries += again.length
      this.emit('retry', { entries: again.map((item) => item.entry), error, retryInMs })
    }
    // Last: when Redis refuses the dead letters, the error reaches the round (flush() rejects with it).
    if (exhausted.length > 0) await this.deadLetter(exhausted, error)
  }

  /** The delay before entries are delivered again: doubled per attempt, at most maxRetryDelayMs. */
  private retryDelay(items: readonly { entry: WriteBehindEntry<T> }[]): number {
    const { retryDelayMs, maxRetryDelayMs } = this.options
    const attempt = Math.max(...items.map((item) => item.entry.attempt))
    return Math.min(maxRetryDelayMs, retryDelayMs * 2 ** (attempt - 1))
  }

  /**
   * Moves entries to the dead-letter stream and out of the queue in one script, then drops their keys from
   * the cache. When Redis refuses (a full Redis refuses the XADD), nothing moved: the entries stay pending,
   * are delivered again after a retry delay, and the error is thrown (no deadLetter event, no count).
   */
  private async deadLetter(
    items: readonly { streamId: string; entry: WriteBehindEntry<T> }[],
    error: unknown,
  ): Promise<void> {
    const message = error instanceof Error ? error.message : String(error)
    const args: (string | number)[] = [GROUP, DEAD_LETTER_WIDTH]
    for (const { streamId, entry } of items) {
      args.push(
        streamId,
        entry.id,
        entry.key,
        JSON.stringify(entry.value) ?? 'null',
        entry.queuedAt,
        entry.attempt,
        message,
      )
    }
    let moved: unknown
    try {
      moved = await this.redis('dead letter', (client) =>
        client.eval(DEAD_LETTER_SCRIPT, 2, this.streamKey, this.deadLetterKey, ...args),
      )
    } catch (refusal) {
      this.retryAt = Date.now() + this.retryDelay(items)
      throw refusal
    }
    for (const { streamId } of items) this.failures.delete(streamId)
    // Entries another consumer finished meanwhile (after a takeover) were left alone: not dead letters.
    const dead = items.filter((_, i) => (moved as number[])[i] === 1)
    // The database will never get these values: the cache must not keep serving them.
    await Promise.all(
      dead.map(({ entry }) =>
        this.options.cache.delete(entry.key).catch((error: unknown) => {
          this.emit('error', { operation: 'dead-letter cache delete', error })
        }),
      ),
    )
    this.counters.deadLettered += dead.length
    for (const { entry } of dead) this.emit('deadLetter', { entry, error })
  }

  /** Acknowledges and removes entries the writer wrote; a failure leaves them pending (delivered again). */
  private async acknowledge(streamIds: readonly string[]): Promise<void> {
    if (streamIds.length === 0) return
    await this.redis('acknowledge', (client) =>
      client.eval(ACKNOWLEDGE_SCRIPT, 1, this.streamKey, GROUP, ...streamIds),
    )
    for (const streamId of streamIds) this.failures.delete(streamId)
  }

  /** How many times each entry has been delivered (this delivery included), from the group's records. */
  private async deliveryCounts(streamIds: readonly string[]): Promise<Map<string, number>> {
    if (streamIds.length === 0) return new Map()
    const sorted = [...streamIds].sort(compareSequences)
    const pending = (await this.redis('pending', (client) =>
      client.xpending(this.streamKey, GROUP, sorted[0]!, sorted[sorted.length - 1]!, streamIds.length * 4),
    )) as [string, string, number, number][]
    return new Map(pending.map(([streamId, , , count]) => [streamId, Number(count)]))
  }

  private entryOf(fields: Record<string, string>, attempt: number, sequence: string): WriteBehindEntry<T> {
    return {
      id: fields.id ?? '',
      key: fields.key ?? '',
      sequence,
      value: JSON.parse(fields.value ?? 'null') as T,
      queuedAt: Number(fields.at ?? '0'),
      attempt,
    }
  }

  /**
   * ioredis queues commands while it reconnects and sends them later: a write() that already failed for
   * its caller would then still reach the database. Refuse at once instead, like RedisLayer.
   */
  private refuseWhileDisconnected(): void {
    // Before the first connection, commands wait for it (nothing was refused yet); after, never.
    const status = this.options.client.status
    if (this.everReady && status !== 'ready') {
      throw new LayerUnavailableError('write-behind', `write-behind refused: Redis connection is ${status}`)
    }
  }

  private ensureGroup(): Promise<void> {
    this.groupReady ??= this.redis('create group', (client) =>
      client.xgroup('CREATE', this.streamKey, GROUP, '0', 'MKSTREAM'),
    ).then(
      () => undefined,
      (error: unknown) => {
        if (String((error as Error)?.message ?? error).includes('BUSYGROUP')) return
        this.groupReady = undefined
        throw error
      },
    )
    return this.groupReady
  }

  private async redis<R>(operation: string, send: (client: Redis | Cluster) => Promise<R>): Promise<R> {
    const limit = this.options.commandTimeout
    try {
      return await bounded(
        send(this.options.client),
        limit,
        () =>
          new LayerUnavailableError('write-behind', `write-behind ${operation}: no answer in ${limit} ms`),
      )
    } catch (error) {
      if (error instanceof LayerCacheError) throw error
      const reason = error instanceof Error ? error.message : String(error)
      throw new LayerUnavailableError('write-behind', `write-behind ${operation} failed: ${reason}`, error)
    }
  }
}

/** Whether Redis itself refused the command (an error reply): it ran nothing. */
function answeredWithError(error: unknown): boolean {
  const cause = (error as { cause?: unknown } | undefined)?.cause
  return cause instanceof Error && cause.name === 'ReplyError'
}

function consumerName(name: unknown): string {
  if (typeof name !== 'string' || name === '' || name.length > 256) {
    throw new InvalidOptionError('WriteBehind: consumer must be a non-empty string of at most 256 characters')
  }
  return name
}

function fieldsOf(list: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (let i = 0; i + 1 < list.length; i += 2) out[list[i]!] = list[i + 1]!
  return out
}

/** Orders two entries' `sequence`s (queue order): negative, zero or positive like a sort comparator. */
export function compareSequences(a: string, b: string): number {
  const [am, as] = a.split('-').map(BigInt) as [bigint, bigint]
  const [bm, bs] = b.split('-').map(BigInt) as [bigint, bigint]
  return am === bm ? (as < bs ? -1 : as > bs ? 1 : 0) : am < bm ? -1 : 1
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
