import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import {
  assertKnownOptions,
  assertPositiveInteger,
  type BusListener,
  type BusOperation,
  bounded,
  checkClientReplies,
  type InvalidationBus,
  InvalidationBusError,
  InvalidOptionError,
  LayerTimeoutError,
  type UnverifiedReason,
} from '@layercache/core'
import type { Redis } from 'ioredis'
import { decodeBody, isEpoch, packOperations, WIRE_VERSION, type WireBody } from './bus-wire'
import { MessageSigner } from './message-signer'
import { isCluster, messageEvent, type RedisClient, subscribeTo, unsubscribeFrom } from './redis-pubsub'
import { SenderSequences } from './sender-sequences'
import { watchSubscription } from './subscription-signals'

export interface RedisInvalidationBusOptions {
  /** Sends messages; may be the connection the cache already uses. */
  readonly publisher: RedisClient
  /**
   * A connection of its own (it enters subscriber mode). On a Cluster: a Cluster client created with
   * `shardedSubscribers: true`. The bus never closes either client.
   */
  readonly subscriber: RedisClient
  /** Every instance sharing invalidations uses the same channel. Default `layercache:invalidation`. */
  readonly channel?: string
  /**
   * HMAC-SHA256 secret(s), at least 16 characters. With a list, the first signs and all verify (rotation).
   * When set, unsigned, tampered and replayed messages are rejected and counted.
   */
  readonly signingSecret?: string | readonly string[]
  /**
   * @deprecated No longer used: replays are refused by sequence number, and no decision reads a clock of
   * another host. Still accepted (a positive integer) so existing code keeps working.
   */
  readonly replayWindowMs?: number
  /** Interval of the heartbeat each instance sends (and expects back). Default 1000 ms. */
  readonly heartbeatMs?: number
  /** No heartbeat back for this long: messages may be lost, memory is flushed. Default 3 × heartbeatMs. */
  readonly heartbeatTimeoutMs?: number
  /**
   * A publish not acknowledged by Redis within this is failed; so is close()'s unsubscribe (the bus is
   * closed all the same). Default 1000 ms.
   */
  readonly publishTimeoutMs?: number
  /** Larger invalidations are split into several messages. Default 256 KiB. */
  readonly maxMessageBytes?: number
  /** SPUBLISH/SSUBSCRIBE (sharded pub/sub). Default: true when the publisher is a Cluster. */
  readonly sharded?: boolean
}
const OPTIONS = [
  'publisher',
  'subscriber',
  'channel',
  'signingSecret',
  'replayWindowMs',
  'heartbeatMs',
  'heartbeatTimeoutMs',
  'publishTimeoutMs',
  'maxMessageBytes',
  'sharded',
] as const

/**
 * `beforeJoin`: signed before its sender could know this instance had subscribed (see the join epoch in
 * RedisInvalidationBus). `stale` is no longer used (nothing is refused for its timestamp); it stays so code
 * reading it compiles.
 */
export type RejectionReason =
  | 'unsigned'
  | 'signature'
  | 'stale'
  | 'replay'
  | 'beforeJoin'
  | 'malformed'
  | 'version'

export interface InvalidationBusStats {
  /** Messages sent by this instance (heartbeats excluded). */
  readonly published: number
  readonly publishErrors: number
  /** Messages from other instances applied. */
  readonly received: number
  /** Messages refused, by reason. */
  readonly rejected: Readonly<Record<RejectionReason, number>>
  /** Gaps seen in other instances' sequences (a first message heard that is not the sender's first, too). */
  readonly gaps: number
  /** Times listeners were told their memory is unverified, by reason. */
  readonly unverified: Readonly<Record<UnverifiedReason, number>>
  /** Whether this instance's own heartbeat currently comes back. */
  readonly healthy: boolean
}

export interface InvalidationBusEvents {
  rejected: [{ reason: RejectionReason; detail: string }]
  unverified: [{ reason: UnverifiedReason; detail: string }]
  /** A background failure (heartbeat, subscription, a listener throwing). */
  error: [Error]
}

/**
 * KEYS: the join counter. Its next value ({1, n}), or {0, what it holds} when that is not a whole number
 * that can grow within 2^53 - 1 (left unchanged: whatever wrote it is not ours to undo).
 */
const JOIN_SCRIPT = `
local raw = redis.call('GET', KEYS[1])
if raw and (not string.match(raw, '^%d+$') or #raw > 16 or tonumber(raw) >= 9007199254740991) then
  return {0, raw}
end
return {1, redis.call('INCR', KEYS[1])}`

function checkClient(value: unknown, name: string): RedisClient {
  const client = value as Partial<Redis> | null
  if (client === null || typeof client !== 'object' || typeof client.publish !== 'function') {
    throw new InvalidOptionError(`RedisInvalidationBus: ${name} must be an ioredis Redis or Cluster client`)
  }
  checkClientReplies(value, 'RedisInvalidationBus', name)
  return value as RedisClient
}

interface Batch {
  readonly operations: BusOperation[]
  readonly done: Promise<void>
}

/**
 * Carries invalidations between instances over Redis pub/sub (sharded on a Cluster). Messages are
 * versioned, batched per tick, signed and numbered per sender (the numbers, not clocks, refuse replays);
 * an instance applies none of its own, hearing them only as proof that its subscription delivers. It tells
 * its listeners to flush whenever it cannot be sure it heard everything: on subscribing, when its
 * subscription may have dropped and once it is back, on a gap in a sender's numbers, and while its own
 * heartbeat does not come back.
 *
 * Join epochs refuse what was signed before this instance subscribed, without a clock: once subscribed it
 * takes the next number of a Redis counter (`<channel>~epoch`, INCR) and announces it in a heartbeat.
 * Every message carries the largest epoch its sender knew when signing (learned from the messages it
 * hears, answered at once with a heartbeat, and read from the counter with every heartbeat). From a sender
 * it has not heard yet, an instance refuses a message carrying less than its own epoch: it was signed
 * before the sender could know of this instance, so it is a replay of something from before the
 * subscription, or an authentic message (a live sender's of the moment of joining, or one from a sender
 * that joined after Redis lost the counter). It is never applied, and memory is flushed for it (at once,
 * or once the join announcement is heard back), so no authentic one is dropped unheard. Every
 * resubscription takes a new epoch.
 */
export class RedisInvalidationBus implements InvalidationBus {
  /** This instance's sender id. */
  readonly id = randomBytes(9).toString('base64url')
  readonly channel: string
  /** Settles once the first subscription is confirmed (rejects never: failures retry and emit `error`). */
  readonly ready: Promise<void>
  private readonly publisher: RedisClient
  private readonly subscriber: RedisClient
  private readonly signer: MessageSigner | undefined
  private readonly senders = new SenderSequences()
  private readonly emitter = new EventEmitter<InvalidationBusEvents>()
  private readonly listeners = new Set<BusListener>()
  private readonly sharded: boolean
  private readonly heartbeatMs: number
  private readonly heartbeatTimeoutMs: number
  private readonly publishTimeoutMs: number
  private readonly maxMessageBytes: number
  private readonly heartbeat: NodeJS.Timeout
  private readonly unwatch: () => void
  /** The Redis counter join epochs come from. */
  private readonly epochKey: string
  /** The largest join epoch known (own, heard, or read from the counter): every message carries it. */
  private epoch = 0
  /** This instance's own join epoch; 0 until it joined (nothing is refused for it until then). */
  private joinedAt = 0
  private joining = false
  /**
   * The number of the heartbeat that announced the join, until it is heard back: everything Redis took
   * before it has been heard by then.
   */
  private joinAnnouncement = 0
  /** A message was refused as `beforeJoin` before the announcement came back (see heardItself). */
  private refusedBeforeAnnouncement = false
  /** A heartbeat answering a newly heard epoch is scheduled. */
  private answering = false
  private sequence = 0
  /** The newest sequence number that failed to publish, until a later message said so (`l`). */
  private undelivered: number | undefined
  private batch: Batch | undefined
  /** When this instance last heard itself (performance.now(): one host, immune to wall clock steps). */
  private lastEchoAt = performance.now()
  private healthy = true
  private subscribedOnce = false
  /** The subscription may be gone (a client event said so) and is not known to be back yet. */
  private lost = false
  /** Losses seen so far: a subscription confirmed after a later loss confirms nothing. */
  private losses = 0
  private closed = false
  private markReady!: () => void
  private readonly counters = {
    published: 0,
    publishErrors: 0,
    received: 0,
    gaps: 0,
    rejected: { unsigned: 0, signature: 0, stale: 0, replay: 0, beforeJoin: 0, malformed: 0, version: 0 },
    unverified: { subscribed: 0, reconnect: 0, gap: 0, heartbeat: 0 },
  }

  constructor(options: RedisInvalidationBusOptions) {
    assertKnownOptions(options, OPTIONS, 'RedisInvalidationBus')
    if (options === undefined)
      throw new InvalidOptionError('RedisInvalidationBus needs { publisher, subscriber }')
    this.publisher = checkClient(options.publisher, 'publisher')
    this.subscriber = checkClient(options.subscriber, 'subscriber')
    if (this.publisher === this.subscriber) {
      throw new InvalidOptionError(
        'RedisInvalidationBus: the subscriber needs a connection of its own (a subscribed connection cannot publish)',
      )
    }
    const channel = options.channel ?? 'layercache:invalidation'
    if (typeof channel !== 'string' || channel.length === 0) {
      throw new InvalidOptionError('RedisInvalidationBus: channel must be a non-empty string')
    }
    this.channel = channel
    this.epochKey = `${channel}~epoch`
    this.signer = options.signingSecret === undefined ? undefined : new MessageSigner(options.signingSecret)
    if (options.sharded !== undefined && typeof options.sharded !== 'boolean') {
      throw new InvalidOptionError('RedisInvalidationBus: sharded must be a boolean')
    }
    this.sharded = options.sharded ?? isCluster(this.publisher)
    if (this.sharded && isCluster(this.subscriber) && this.subscriber.options.shardedSubscribers !== true) {
      throw new InvalidOptionError(
        'RedisInvalidationBus: a Cluster subscriber needs `shardedSubscribers: true` for sharded pub/sub',
      )
    }
    assertPositiveInteger(options.replayWindowMs, 'replayWindowMs')
    this.heartbeatMs = assertPositiveInteger(options.heartbeatMs, 'heartbeatMs') ?? 1000
    this.heartbeatTimeoutMs =
      assertPositiveInteger(options.heartbeatTimeoutMs, 'heartbeatTimeoutMs') ?? 3 * this.heartbeatMs
    if (this.heartbeatTimeoutMs <= this.heartbeatMs) {
      throw new InvalidOptionError('RedisInvalidationBus: heartbeatTimeoutMs must be larger than heartbeatMs')
    }
    this.publishTimeoutMs = assertPositiveInteger(options.publishTimeoutMs, 'publishTimeoutMs') ?? 1000
    this.maxMessageBytes = assertPositiveInteger(options.maxMessageBytes, 'maxMessageBytes') ?? 256 * 1024
    this.ready = new Promise((resolve) => {
      this.markReady = resolve
    })
    this.subscriber.on(messageEvent(this.sharded), this.onMessage)
    this.unwatch = watchSubscription(this.subscriber, this.sharded, {
      lost: (detail) => this.subscriptionLost(detail),
      back: () => {
        if (!this.closed && this.lost) this.subscribeChannel()
      },
    })
    this.subscribeChannel()
    this.heartbeat = setInterval(() => this.beat(), this.heartbeatMs)
    this.heartbeat.unref()
  }

  on<K extends keyof InvalidationBusEvents>(
    event: K,
    listener: (...args: InvalidationBusEvents[K]) => void,
  ): () => void {
    this.emitter.on(event, listener as never)
    return () => this.emitter.off(event, listener as never)
  }

  /** Operations published in the same tick leave as one message (or several, past maxMessageBytes). */
  publish(operations: readonly BusOperation[]): Promise<void> {
    if (this.closed) return Promise.reject(new InvalidOptionError('RedisInvalidationBus is closed'))
    if (this.batch === undefined) {
      const pending: BusOperation[] = []
      const done = Promise.resolve().then(() => {
        this.batch = undefined
        return this.send(pending)
      })
      this.batch = { operations: pending, done }
    }
    this.batch.operations.push(...operations)
    return this.batch.done
  }

  subscribe(listener: BusListener): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  get stats(): InvalidationBusStats {
    const c = this.counters
    return {
      published: c.published,
      publishErrors: c.publishErrors,
      received: c.received,
      gaps: c.gaps,
      rejected: { ...c.rejected },
      unverified: { ...c.unverified },
      healthy: this.healthy,
    }
  }

  /**
   * Stops the heartbeat and the subscription; the clients stay open (they are the caller's). Rejects
   * with LayerTimeoutError when Redis does not confirm the unsubscribe within publishTimeoutMs (the
   * bus is closed all the same: nothing it hears is applied any more).
   */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.heartbeat)
    this.subscriber.off(messageEvent(this.sharded), this.onMessage)
    this.unwatch()
    this.listeners.clear()
    await unsubscribeFrom(
      this.subscriber,
      this.channel,
      this.sharded,
      'invalidation bus',
      this.publishTimeoutMs,
    )
  }

  /**
   * Subscribes, and flushes once that took effect: the first time, and after a loss (ioredis resubscribes
   * by itself; subscribing once more tells when that took effect).
   */
  private subscribeChannel(): void {
    const losses = this.losses
    subscribeTo(this.subscriber, this.channel, this.sharded).then(
      () => {
        if (this.closed || losses !== this.losses) return
        if (this.subscribedOnce) {
          if (this.lost) this.regained('resubscribed')
          // Join again: Redis may have restarted without the counter, and senders joining now take
          // epochs from the new one.
          this.joinedAt = 0
          void this.join()
          return
        }
        this.subscribedOnce = true
        this.lastEchoAt = performance.now()
        // Whatever was cached before the subscription took effect may have been invalidated unheard.
        this.tellUnverified('subscribed', 'subscribed')
        // Ready once it joined (or failed to: it then tries again with every heartbeat).
        this.join().finally(() => this.markReady())
      },
      (error: unknown) => {
        if (this.closed) return
        this.emitError(error)
        // After a loss, the next sign of the subscription being back asks again (or a heartbeat heard
        // ends it); until the first subscription, nothing else will.
        if (this.subscribedOnce) return
        setTimeout(() => {
          if (!this.closed) this.subscribeChannel()
        }, this.heartbeatMs).unref()
      },
    )
  }

  /**
   * Takes this instance's join epoch, after the subscription took effect: any message signed later by a
   * sender that knew it carries at least as much. Announced at once, so live peers answer within a round
   * trip. A counter Redis answers with something unusable (written by something else) is reported and
   * refuses nothing.
   */
  private async join(): Promise<void> {
    if (this.joining || this.joinedAt > 0 || this.closed) return
    this.joining = true
    try {
      const reply = await this.bounded(this.publisher.eval(JOIN_SCRIPT, 1, this.epochKey))
      const [taken, epoch] = reply as [number, unknown]
      if (taken !== 1 || !isEpoch(epoch) || epoch === 0) {
        throw new InvalidationBusError(
          `RedisInvalidationBus: the join counter "${this.epochKey}" holds ${JSON.stringify(String(epoch).slice(0, 32))}, not a whole number below 2^53 - 1; it was left as it is, and messages signed before this instance subscribed are not refused`,
        )
      }
      if (this.closed) return
      this.joinedAt = epoch
      this.epoch = Math.max(this.epoch, epoch)
      this.sendBody(null).catch((error: unknown) => this.emitError(error))
      this.joinAnnouncement = this.sequence
    } catch (error) {
      this.emitError(error)
    } finally {
      this.joining = false
    }
  }

  /** Reads the counter so a sender that cannot hear the channel still learns of instances that joined. */
  private async readEpoch(): Promise<void> {
    try {
      const stored = await this.bounded(this.publisher.get(this.epochKey))
      const epoch = stored !== null && /^\d{1,16}$/.test(stored) ? Number(stored) : Number.NaN
      if (isEpoch(epoch) && epoch > this.epoch) this.epoch = epoch
    } catch {
      // The heartbeat goes out with what is known; its own failure is what reports an unreachable Redis.
    }
  }

  /** A newer epoch was heard: some instance joined. Answer with a heartbeat that carries it, once. */
  private learnedEpoch(epoch: number): void {
    this.epoch = epoch
    if (this.answering) return
    this.answering = true
    setImmediate(() => {
      this.answering = false
      if (!this.closed) this.sendBody(null).catch((error: unknown) => this.emitError(error))
    })
  }

  private subscriptionLost(detail: string): void {
    if (this.closed || !this.subscribedOnce) return
    this.losses++
    if (this.lost) return
    this.lost = true
    this.tellUnverified('reconnect', detail)
  }

  /** The subscription delivers again: flush what was cached while it may not have. */
  private regained(detail: string): void {
    this.lost = false
    this.healthy = true
    this.lastEchoAt = performance.now()
    // Others' numbers jumped while we could not hear them: that is covered by this flush.
    this.senders.flushed()
    this.tellUnverified('reconnect', detail)
  }

  private async send(operations: readonly BusOperation[]): Promise<void> {
    const messages = packOperations(operations, this.maxMessageBytes)
    try {
      await Promise.all(messages.map((wire) => this.sendBody(wire)))
      this.counters.published += messages.length
    } catch (error) {
      this.counters.publishErrors++
      throw error
    }
  }

  /** Numbers, signs and publishes one body (`null` operations: a heartbeat). */
  private sendBody(operations: WireBody['o']): Promise<unknown> {
    const sequence = ++this.sequence
    const owned = this.undelivered
    const body: WireBody = {
      s: this.id,
      q: sequence,
      t: Date.now(), // for logs and the bus-lag metric only: nothing is refused for it
      n: randomBytes(12).toString('base64url'),
      e: this.epoch,
      o: operations,
      ...(owned === undefined ? {} : { l: 1 }),
    }
    const text = JSON.stringify(body)
    const signature = this.signer === undefined ? '' : this.signer.sign(this.channel, text)
    const message = `${WIRE_VERSION}.${signature}.${text}`
    const sending = this.sharded
      ? (this.publisher as Redis).spublish(this.channel, message)
      : this.publisher.publish(this.channel, message)
    return this.bounded(sending).then(
      (reply) => {
        if (owned !== undefined && this.undelivered === owned) this.undelivered = undefined
        return reply
      },
      (error: unknown) => {
        this.undelivered = Math.max(this.undelivered ?? 0, sequence)
        throw error
      },
    )
  }

  private bounded<T>(promise: Promise<T>): Promise<T> {
    const ms = this.publishTimeoutMs
    return bounded(promise, ms, () => new LayerTimeoutError('invalidation bus', 'publish', ms))
  }

  private beat(): void {
    if (this.closed) return
    if (this.subscribedOnce && this.joinedAt === 0) void this.join()
    this.readEpoch().then(() => {
      if (!this.closed) this.sendBody(null).catch((error: unknown) => this.emitError(error))
    })
    const silentMs = performance.now() - this.lastEchoAt
    if (silentMs <= this.heartbeatTimeoutMs) return
    // Not hearing ourselves: what others send is not heard either. Flush on every beat until it comes
    // back, so nothing cached meanwhile lives longer than the detection time.
    this.healthy = false
    this.tellUnverified('heartbeat', `no heartbeat back for ${Math.round(silentMs)} ms`)
  }

  private readonly onMessage = (channel: string | Buffer, raw: string | Buffer) => {
    if (this.closed || String(channel) !== this.channel) return
    const message = String(raw)
    const firstDot = message.indexOf('.')
    const secondDot = firstDot < 0 ? -1 : message.indexOf('.', firstDot + 1)
    if (secondDot < 0) return this.reject('malformed', 'not a layercache bus message')
    if (message.slice(0, firstDot) !== WIRE_VERSION) {
      return this.reject('version', `unsupported version ${message.slice(0, firstDot).slice(0, 16)}`)
    }
    const signature = message.slice(firstDot + 1, secondDot)
    const text = message.slice(secondDot + 1)
    if (this.signer !== undefined) {
      if (signature === '') return this.reject('unsigned', 'unsigned message')
      if (!this.signer.verify(this.channel, text, signature)) return this.reject('signature', 'bad signature')
    }
    const body = decodeBody(text)
    if (body === undefined) return this.reject('malformed', 'malformed body')
    if (body.sender === this.id) return this.heardItself(body.sequence)
    if (body.epoch !== undefined) {
      if (body.epoch < this.joinedAt && !this.senders.knows(body.sender)) {
        const detail = `#${body.sequence} from ${body.sender} was signed before it knew this instance subscribed (epoch ${body.epoch} < ${this.joinedAt})`
        if (this.joinAnnouncement !== 0) this.refusedBeforeAnnouncement = true
        // Not applied (a replay must not act), but never dropped unheard either: a sender that joined
        // after Redis lost the counter (a restart) carries a smaller epoch until it hears a larger one,
        // and its invalidations are real. Flushing is all an authentic message may cost.
        else this.tellUnverified('gap', detail)
        return this.reject('beforeJoin', detail)
      }
      if (body.epoch > this.epoch) this.learnedEpoch(body.epoch)
    }
    const verdict = this.senders.observe(body.sender, body.sequence)
    if (verdict === 'replay') return this.reject('replay', `#${body.sequence} from ${body.sender} again`)
    if (verdict === 'gap' || body.lost) {
      this.counters.gaps++
      this.tellUnverified('gap', `messages from ${body.sender} may have been lost before #${body.sequence}`)
    }
    if (body.operations === null || body.operations.length === 0) return
    this.counters.received++
    for (const listener of this.listeners) {
      try {
        listener.apply(body.operations, { sentAt: body.sentAt })
      } catch (error) {
        this.emitError(error)
      }
    }
  }

  /** Hearing any of its own messages proves the subscription delivers now. */
  private heardItself(sequence: number): void {
    this.lastEchoAt = performance.now()
    if (this.joinAnnouncement !== 0 && sequence >= this.joinAnnouncement) {
      this.joinAnnouncement = 0
      // A live peer may have signed a message just before it heard of this instance, and stopped before
      // its next one (which would show the gap): what was refused until now is covered by a flush.
      if (this.refusedBeforeAnnouncement) {
        this.refusedBeforeAnnouncement = false
        this.tellUnverified('gap', 'refused messages signed before their senders knew this instance joined')
      }
    }
    if (this.healthy && !this.lost) return
    this.regained(this.lost ? 'heard itself again' : 'heartbeat back')
  }

  private tellUnverified(reason: UnverifiedReason, detail: string): void {
    this.counters.unverified[reason]++
    for (const listener of this.listeners) {
      try {
        listener.unverified(reason, detail)
      } catch (error) {
        this.emitError(error)
      }
    }
    this.emitter.emit('unverified', { reason, detail })
  }

  private reject(reason: RejectionReason, detail: string): void {
    this.counters.rejected[reason]++
    this.emitter.emit('rejected', { reason, detail })
  }

  private emitError(error: unknown): void {
    if (this.emitter.listenerCount('error') === 0) return // background noise must never crash the app
    this.emitter.emit('error', error instanceof Error ? error : new Error(String(error)))
  }
}
