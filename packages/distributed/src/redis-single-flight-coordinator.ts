import { createHash, randomBytes } from 'node:crypto'
import {
  assertKnownOptions,
  assertPositiveInteger,
  asUnavailable,
  bounded,
  checkClientReplies,
  InvalidOptionError,
  LayerTimeoutError,
  LayerUnavailableError,
  type SingleFlightCoordinator,
  type SingleFlightLease,
  type SingleFlightResult,
  type SingleFlightWait,
} from '@layercache/core'
import { ConnectionGuard } from '@layercache/layer-redis'
import type { Redis } from 'ioredis'
import { type LeaseOwner, RedisLease } from './redis-lease'
import { isCluster, messageEvent, type RedisClient, subscribeTo, unsubscribeFrom } from './redis-pubsub'
import {
  decodeResult,
  encodeResult,
  readSerializerOption,
  type SingleFlightSerializer,
} from './single-flight-result'
import { ABANDON, ACQUIRE, CHECK, RELEASE, RENEW, runScript } from './single-flight-scripts'
import { type FlightKeys, type LeaseState, WaitingRoom } from './waiting-room'

export interface RedisSingleFlightCoordinatorOptions {
  /** Runs the lease scripts and publishes notifications; may be the connection the cache already uses. */
  readonly client: RedisClient
  /**
   * A connection for notifications (it enters subscriber mode; on a Cluster, a Cluster client created
   * with `shardedSubscribers: true`). Default: `client.duplicate()`, opened on the first wait and closed
   * by close(). A subscriber given here stays the caller's to close.
   */
  readonly subscriber?: RedisClient
  /** In front of every key and of the notification channel. No braces. Default `layercache:sf:`. */
  readonly prefix?: string
  /**
   * A holder that stops renewing (crashed, frozen) loses its lease after this; a holder renews every
   * leaseMs / 3 while its load runs, so a load may take longer than the lease. Default 2000 ms.
   */
  readonly leaseMs?: number
  /** A waiter gives up after this, and its instance loads itself. More than leaseMs. Default 15 000 ms. */
  readonly waitTimeoutMs?: number
  /** Waiters look at the lease this often, in case a notification is missed. Default 250 ms. */
  readonly pollMs?: number
  /** How long a handed-over (uncacheable) result stays readable for waiters. Default 5000 ms. */
  readonly resultTtlMs?: number
  /** Every Redis call is abandoned with LayerTimeoutError after this. Default 1000 ms. */
  readonly commandTimeout?: number
  /** Encodes handed-over results. Default JSON (values JSON cannot carry are not handed over). */
  readonly serializer?: SingleFlightSerializer
  /** Larger handed-over results are not stored: waiters load themselves. Default 1 MiB. */
  readonly maxResultBytes?: number
  /** Waits in this process at once; beyond it a wait ends at once (its instance loads). Default 10 000. */
  readonly maxWaiters?: number
}
const OPTIONS = [
  'client',
  'subscriber',
  'prefix',
  'leaseMs',
  'waitTimeoutMs',
  'pollMs',
  'resultTtlMs',
  'commandTimeout',
  'serializer',
  'maxResultBytes',
  'maxWaiters',
] as const

export interface SingleFlightCoordinatorStats {
  /** Leases taken by this instance. */
  readonly acquired: number
  /** tryAcquire calls that found another holder. */
  readonly contended: number
  /** Leases released while still held. */
  readonly released: number
  /** Renewals of held leases that Redis confirmed (one every leaseMs / 3 while a load runs). */
  readonly renewed: number
  /** Leases found lost: a renewal or the release found them gone, or no renewal got through in time. */
  readonly lost: number
  /** Results handed over to waiters (values that were not cached). */
  readonly handedOver: number
  /** Looks at a lease by waiters (one as a wait starts, then one per poll). */
  readonly looks: number
  /** Waits ended by a notification. */
  readonly notified: number
  /** Waits ended because polling found the lease gone. */
  readonly polled: number
  /** Waits that reached waitTimeoutMs. */
  readonly timeouts: number
  /** Waits refused because maxWaiters were already waiting. */
  readonly overflows: number
  /** Redis calls that failed or timed out. */
  readonly errors: number
  /** Waits under way now. */
  readonly waiting: number
  /** Leases held now. */
  readonly holding: number
}

/** What errors name as the failing part. */
const NAME = 'single-flight coordinator'
/** Ends a release notification when the holder left a result for the waiters to read. */
const WITH_RESULT = ':result'
/** Tokens stay monotonic per key while it is used at least once a day (and beyond, see ACQUIRE). */
const TOKEN_TTL_MS = 24 * 60 * 60 * 1000

function checkClient(value: unknown, name: string): RedisClient {
  const client = value as Partial<Redis> | null
  if (
    client === null ||
    typeof client !== 'object' ||
    typeof client.evalsha !== 'function' ||
    typeof client.publish !== 'function'
  ) {
    throw new InvalidOptionError(
      `RedisSingleFlightCoordinator: ${name} must be an ioredis Redis or Cluster client`,
    )
  }
  checkClientReplies(value, 'RedisSingleFlightCoordinator', name)
  return value as RedisClient
}

function checkPrefix(value: unknown): string {
  if (value === undefined) return 'layercache:sf:'
  // A brace would make Redis Cluster hash a part of the prefix instead of each key's own hash tag.
  const refused = (c: string) => c === '{' || c === '}' || c < ' ' || c === '\x7f'
  if (typeof value !== 'string' || value.length === 0 || value.length > 256 || [...value].some(refused)) {
    throw new InvalidOptionError(
      'RedisSingleFlightCoordinator: prefix must be 1 to 256 characters without braces or control characters',
    )
  }
  return value
}

/**
 * Fleet-wide single-flight on Redis (standalone or Cluster): one loader per key across every instance,
 * under a lease with a fencing token. Per key, the lease, its token counter and a handed-over result live
 * in one hash slot (`<prefix>{<hash>}:lease|:token|:result`, hash = the first 20 hex digits of the key's
 * SHA-256). Holders renew every leaseMs / 3; a holder that dies stops renewing and its lease expires.
 * Releases are announced on one channel (`<prefix>{done}`, sharded pub/sub on a Cluster); waiters also
 * poll, so a lost notification or a dead holder costs at most pollMs.
 */
export class RedisSingleFlightCoordinator implements SingleFlightCoordinator, LeaseOwner {
  readonly channel: string
  readonly prefix: string
  readonly leaseMs: number
  readonly waitTimeoutMs: number
  readonly pollMs: number
  readonly resultTtlMs: number
  readonly commandTimeout: number
  private readonly client: RedisClient
  private readonly subscriberOption: RedisClient | undefined
  private subscriber: RedisClient | undefined
  private readonly sharded: boolean
  private readonly serializer: SingleFlightSerializer
  private readonly maxResultBytes: number
  private readonly room: WaitingRoom
  private readonly leases = new Set<RedisLease>()
  private subscription: Promise<void> | undefined
  private readonly connection: ConnectionGuard
  private closed = false
  private readonly counters = {
    acquired: 0,
    contended: 0,
    released: 0,
    renewed: 0,
    lost: 0,
    handedOver: 0,
    errors: 0,
  }

  constructor(options: RedisSingleFlightCoordinatorOptions) {
    assertKnownOptions(options, OPTIONS, 'RedisSingleFlightCoordinator')
    if (options === undefined) throw new InvalidOptionError('RedisSingleFlightCoordinator needs { client }')
    this.client = checkClient(options.client, 'client')
    this.sharded = isCluster(this.client)
    if (options.subscriber !== undefined) {
      const subscriber = checkClient(options.subscriber, 'subscriber')
      if (subscriber === this.client) {
        throw new InvalidOptionError(
          'RedisSingleFlightCoordinator: the subscriber needs a connection of its own (a subscribed connection cannot run commands)',
        )
      }
      if (isCluster(subscriber) !== this.sharded) {
        throw new InvalidOptionError(
          'RedisSingleFlightCoordinator: client and subscriber must both be Cluster clients, or neither',
        )
      }
      if (isCluster(subscriber) && subscriber.options.shardedSubscribers !== true) {
        throw new InvalidOptionError(
          'RedisSingleFlightCoordinator: a Cluster subscriber needs `shardedSubscribers: true` for sharded pub/sub',
        )
      }
      this.subscriberOption = subscriber
    }
    this.prefix = checkPrefix(options.prefix)
    this.channel = `${this.prefix}{done}`
    // Short, because a live holder renews it: a dead one is found after at most this much.
    this.leaseMs = assertPositiveInteger(options.leaseMs, 'leaseMs') ?? 2000
    this.waitTimeoutMs = assertPositiveInteger(options.waitTimeoutMs, 'waitTimeoutMs') ?? 15_000
    if (this.waitTimeoutMs <= this.leaseMs) {
      throw new InvalidOptionError(
        'RedisSingleFlightCoordinator: waitTimeoutMs must be larger than leaseMs (waiters outwait a dead holder)',
      )
    }
    this.pollMs = assertPositiveInteger(options.pollMs, 'pollMs') ?? 250
    if (this.pollMs >= this.waitTimeoutMs) {
      throw new InvalidOptionError('RedisSingleFlightCoordinator: pollMs must be smaller than waitTimeoutMs')
    }
    this.resultTtlMs = assertPositiveInteger(options.resultTtlMs, 'resultTtlMs') ?? 5000
    this.commandTimeout = assertPositiveInteger(options.commandTimeout, 'commandTimeout') ?? 1000
    this.serializer = readSerializerOption(options.serializer)
    this.maxResultBytes = assertPositiveInteger(options.maxResultBytes, 'maxResultBytes') ?? 1024 * 1024
    const maxWaiters = assertPositiveInteger(options.maxWaiters, 'maxWaiters') ?? 10_000
    this.room = new WaitingRoom({
      waitTimeoutMs: this.waitTimeoutMs,
      pollMs: this.pollMs,
      maxWaiters,
      look: (keys) => this.look(keys),
      listening: () => this.listen(),
    })
    this.connection = new ConnectionGuard(this.client, NAME)
  }

  /** The lease of `key` when nobody holds it (the key as the stack stores it: generation and namespace included). */
  async tryAcquire(key: string): Promise<SingleFlightLease | undefined> {
    this.assertOpen()
    const keys = this.keysOf(key)
    const nonce = randomBytes(9).toString('base64url')
    const sentAt = performance.now()
    let token: unknown
    try {
      token = await this.command('tryAcquire', () =>
        runScript(
          this.client,
          ACQUIRE,
          [keys.token, keys.lease, keys.result],
          [this.leaseMs, TOKEN_TTL_MS, nonce],
        ),
      )
    } catch (error) {
      // The script may still run after the timeout: undo it then, or everyone would wait for a lease
      // nobody renews. (Commands to one slot run in order, so this runs after it.)
      if (error instanceof LayerTimeoutError) {
        runScript(this.client, ABANDON, [keys.lease], [`:${nonce}`]).catch(() => {})
      }
      throw error
    }
    if (token === null) {
      this.counters.contended++
      return undefined
    }
    this.counters.acquired++
    const lease = new RedisLease(this, Number(token), keys.hash, `${token}:${nonce}`, sentAt)
    this.leases.add(lease)
    return lease
  }

  /** Waits until the holder of `key` releases or loses its lease; at most waitTimeoutMs. */
  wait(key: string): Promise<SingleFlightWait> {
    if (this.closed) return Promise.reject(this.closedError())
    return this.room.wait(this.keysOf(key))
  }

  get stats(): SingleFlightCoordinatorStats {
    const c = this.counters
    const room = this.room.counters
    return {
      acquired: c.acquired,
      contended: c.contended,
      released: c.released,
      renewed: c.renewed,
      lost: c.lost,
      handedOver: c.handedOver,
      looks: room.looks,
      notified: room.notified,
      polled: room.polled,
      timeouts: room.timeouts,
      overflows: room.overflows,
      errors: c.errors + room.lookErrors,
      waiting: this.room.size,
      holding: this.leases.size,
    }
  }

  /**
   * Stops renewing held leases (they expire in Redis, or are released by loads still running), tells
   * every waiter to retry, and unsubscribes; closes the subscriber it made. The client stays open.
   * Calls made afterwards reject, and a stack then loads without a lease.
   */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const lease of [...this.leases]) lease.stopRenewing()
    this.room.wakeAll()
    const subscriber = this.subscriber
    if (subscriber === undefined) return
    subscriber.off(messageEvent(this.sharded), this.onMessage)
    if (subscriber !== this.subscriberOption) {
      subscriber.disconnect()
      return
    }
    await unsubscribeFrom(subscriber, this.channel, this.sharded, NAME, this.commandTimeout)
  }

  // --- LeaseOwner

  renew(lease: RedisLease): Promise<boolean> {
    const keys = this.keysOfHash(lease.hash)
    // Fenced: only the value this acquisition wrote (token and nonce) extends the lease.
    return this.command('renew', () =>
      runScript(this.client, RENEW, [keys.lease], [lease.value, this.leaseMs]),
    ).then((reply) => {
      if (reply !== 1) return false
      this.counters.renewed++
      return true
    })
  }

  async release(lease: RedisLease, result: SingleFlightResult | undefined): Promise<boolean> {
    const keys = this.keysOfHash(lease.hash)
    const payload =
      result === undefined ? undefined : encodeResult(result.value, this.serializer, this.maxResultBytes)
    // Waiters are woken by it; one that misses it finds the lease gone at its next poll.
    const message = payload === undefined ? keys.hash : `${keys.hash}${WITH_RESULT}`
    const channel = this.sharded ? '' : this.channel
    const args = [lease.value, this.resultTtlMs, payload ?? '', channel, message, keys.hash]
    const reply = await this.command('release', () =>
      runScript(this.client, RELEASE, [keys.lease, keys.result], args),
    )
    if (reply !== 1 && reply !== 2) return false
    this.counters.released++
    // 2: released, but Redis refused to store the result (full): waiters load for themselves.
    const handedOver = payload !== undefined && reply === 1
    if (handedOver) this.counters.handedOver++
    if (reply === 2) this.counters.errors++
    if (this.sharded) {
      const sent = handedOver ? message : keys.hash
      this.command('publish', () => (this.client as Redis).spublish(this.channel, sent)).catch(() => {})
    }
    return true
  }

  lost(_lease: RedisLease): void {
    this.counters.lost++
  }

  forget(lease: RedisLease): void {
    this.leases.delete(lease)
  }

  // ---

  private keysOf(key: string): FlightKeys {
    if (typeof key !== 'string')
      throw new InvalidOptionError('RedisSingleFlightCoordinator: key must be a string')
    return this.keysOfHash(createHash('sha256').update(key).digest('hex').slice(0, 20))
  }

  private keysOfHash(hash: string): FlightKeys {
    const base = `${this.prefix}{${hash}}:`
    return { hash, token: `${base}token`, lease: `${base}lease`, result: `${base}result` }
  }

  private async look(keys: FlightKeys): Promise<LeaseState> {
    const reply = (await this.command('wait', () =>
      runScript(this.client, CHECK, [keys.lease, keys.result], []),
    )) as [number, string | null]
    return { gone: reply[0] === -2, result: decodeResult(reply[1], this.serializer) }
  }

  /** Subscribes on the first wait; a failed subscription is tried again by the next wait. */
  private listen(): Promise<void> {
    if (this.closed) return Promise.reject(this.closedError())
    if (this.subscription !== undefined) return this.subscription
    let subscriber = this.subscriber
    if (subscriber === undefined) {
      subscriber = this.subscriberOption ?? this.duplicateClient()
      subscriber.on(messageEvent(this.sharded), this.onMessage)
      this.subscriber = subscriber
    }
    this.subscription = subscribeTo(subscriber, this.channel, this.sharded).then(
      () => undefined,
      (error: unknown) => {
        this.counters.errors++
        this.subscription = undefined
        throw error
      },
    )
    return this.subscription
  }

  private duplicateClient(): RedisClient {
    const subscriber = isCluster(this.client)
      ? this.client.duplicate(undefined, { shardedSubscribers: true })
      : this.client.duplicate()
    // Its failures show as failed waits (polling goes on); ioredis reconnects and resubscribes by itself.
    subscriber.on('error', () => {})
    return subscriber
  }

  private readonly onMessage = (channel: string | Buffer, message: string | Buffer) => {
    if (this.closed || String(channel) !== this.channel) return
    const text = String(message)
    // Unauthenticated: the waiting room confirms in Redis that the lease is gone before anyone stops waiting.
    this.room.notified(text.endsWith(WITH_RESULT) ? text.slice(0, -WITH_RESULT.length) : text)
  }

  /** Runs one Redis call under commandTimeout; every failure becomes a LayerUnavailableError. */
  private command<T>(operation: string, run: () => Promise<T>): Promise<T> {
    // A client that lost its connection would queue the call until Redis is back: refuse it at once.
    const refusal = this.connection.refusal(operation)
    if (refusal !== undefined) {
      this.counters.errors++
      return Promise.reject(refusal)
    }
    const running = run().catch((error: unknown) => {
      throw asUnavailable(NAME, operation, error)
    })
    const ms = this.commandTimeout
    return bounded(running, ms, () => new LayerTimeoutError(NAME, operation, ms)).catch((error: unknown) => {
      this.counters.errors++
      throw error
    })
  }

  private assertOpen(): void {
    if (this.closed) throw this.closedError()
  }

  private closedError(): LayerUnavailableError {
    return new LayerUnavailableError(NAME, 'RedisSingleFlightCoordinator is closed')
  }
}
