import {
  assertKnownOptions,
  assertPositiveInteger,
  asUnavailable,
  bounded,
  checkClientReplies,
  InvalidKeyError,
  InvalidOperationError,
  InvalidOptionError,
  LayerTimeoutError,
  LayerUnavailableError,
} from '@layercache/core'
import type { Cluster, Redis } from 'ioredis'
import { normalizePrefix, scanPattern } from './key-prefix'
import { execChecked } from './pipeline-replies'

/** The exact value `confirm` must have: anything else is refused before Redis is touched. */
export const CLEAR_ALL_CONFIRMATION = 'YES_WIPE_ALL'

export interface ClearAllCacheOptions {
  /** An ioredis Redis or Cluster; you own its lifecycle. Its own ioredis `keyPrefix`, if any, is honoured. */
  readonly client: Redis | Cluster
  /**
   * Required. The prefix whose keys to remove (SCAN + UNLINK, only those keys); a trailing ':' is added
   * when missing ('app' never touches 'application:x'). `''` means FLUSHDB: the whole selected database
   * on every master, keys of other applications included (unless the client has an ioredis
   * `keyPrefix`: then only that prefix is scanned, never flushed).
   */
  readonly keyPrefix: string
  /** Must be exactly `'YES_WIPE_ALL'`; anything else throws InvalidOperationError. */
  readonly confirm: typeof CLEAR_ALL_CONFIRMATION
  /** Needed (`true`) as well when in production mode. */
  readonly allowProduction?: boolean
  /** Default: `process.env.NODE_ENV === 'production'`, read at the call. */
  readonly productionMode?: boolean
  /** SCAN COUNT hint per step (default 500); keys are unlinked in batches of at most 500. */
  readonly batchSize?: number
  /** Each Redis call's bound in ms (default 10 000): LayerTimeoutError past it. */
  readonly commandTimeout?: number
}

export interface ClearAllCacheResult {
  /** `scan`: SCAN + UNLINK of the prefixed keys; `flushdb`: FLUSHDB of every master. */
  readonly mode: 'scan' | 'flushdb'
  /** Keys unlinked (`scan`), or the keys the databases held when flushed (DBSIZE, summed over masters). */
  readonly deleted: number
  /** The normalised `keyPrefix` (as the client sees keys, without its ioredis `keyPrefix`). */
  readonly keyPrefix: string
}

const OPTIONS = [
  'client',
  'keyPrefix',
  'confirm',
  'allowProduction',
  'productionMode',
  'batchSize',
  'commandTimeout',
] as const

const DEFAULT_BATCH = 500
const UNLINK_BATCH = 500
const DEFAULT_TIMEOUT_MS = 10_000
const LAYER = 'redis'

/**
 * Wipes a cache's keys. With a key prefix: SCAN MATCH `<prefix>*` on every master (the one node of a
 * standalone Redis) and UNLINK of what it finds, at most 500 keys per command, per node (one UNLINK per
 * key in a pipeline on a Cluster: no cross-slot command); keys of other prefixes are never touched.
 * Without one: FLUSHDB on every master. Refused with InvalidOperationError, before any Redis call,
 * unless `confirm` is exactly 'YES_WIPE_ALL' and, in production mode, `allowProduction` is `true`.
 */
export async function clearAllCache(options: ClearAllCacheOptions): Promise<ClearAllCacheResult> {
  if (options === undefined || options === null) {
    throw new InvalidOptionError('clearAllCache: options are required ({ client, keyPrefix, confirm })')
  }
  assertKnownOptions(options, OPTIONS, 'clearAllCache')
  const { client } = options
  if (!client || typeof client !== 'object' || typeof client.scan !== 'function') {
    throw new InvalidOptionError('clearAllCache: `client` must be an ioredis Redis or Cluster instance')
  }
  checkClientReplies(client, 'clearAllCache')
  if (typeof options.keyPrefix !== 'string') {
    throw new InvalidOptionError(
      "clearAllCache: `keyPrefix` is required: the prefix to wipe, or '' to FLUSHDB the whole database",
    )
  }
  let keyPrefix: string
  try {
    keyPrefix = normalizePrefix(options.keyPrefix)
  } catch (error) {
    if (error instanceof InvalidKeyError) throw new InvalidOptionError(`clearAllCache: ${error.message}`)
    throw error
  }
  for (const name of ['allowProduction', 'productionMode'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'boolean') {
      throw new InvalidOptionError(`clearAllCache: ${name} must be a boolean`)
    }
  }
  const batchSize = assertPositiveInteger(options.batchSize, 'clearAllCache batchSize') ?? DEFAULT_BATCH
  const timeoutMs =
    assertPositiveInteger(options.commandTimeout, 'clearAllCache commandTimeout') ?? DEFAULT_TIMEOUT_MS

  const clientPrefix = ioredisPrefix(client)
  const full = clientPrefix + keyPrefix
  const mode = full === '' ? 'flushdb' : 'scan'
  const scope = mode === 'flushdb' ? 'the whole Redis database (FLUSHDB)' : `every key under "${full}"`
  if (options.confirm !== CLEAR_ALL_CONFIRMATION) {
    throw new InvalidOperationError(
      `clearAllCache: refused to wipe ${scope}: pass { confirm: '${CLEAR_ALL_CONFIRMATION}' } exactly`,
    )
  }
  const production = options.productionMode ?? process.env.NODE_ENV === 'production'
  if (production && options.allowProduction !== true) {
    throw new InvalidOperationError(
      `clearAllCache: refused to wipe ${scope} in production mode ` +
        '(NODE_ENV=production or productionMode: true): pass allowProduction: true as well',
    )
  }

  const bound = new Bound(timeoutMs)
  await bound.ready(client)
  const masters: Redis[] = client.isCluster ? (client as Cluster).nodes('master') : [client as Redis]
  if (masters.length === 0) {
    throw new LayerUnavailableError(LAYER, 'clearAllCache: the Cluster has no known master')
  }
  for (const node of masters) {
    // ioredis prefixes UNLINK's keys with the node's own keyPrefix: it must be a part of what is scanned.
    const nodePrefix = ioredisPrefix(node)
    if (!full.startsWith(nodePrefix)) {
      throw new InvalidOptionError(
        `clearAllCache: a Cluster node's ioredis keyPrefix "${nodePrefix}" differs from the client's "${clientPrefix}"`,
      )
    }
  }

  let deleted = 0
  if (mode === 'flushdb') {
    for (const node of masters) {
      // In one MULTI: the count is what the flush removed. ASYNC: memory is freed in the background.
      const [count] = await bound.run('FLUSHDB', () => execChecked(node.multi().dbsize().flushdb('ASYNC')))
      deleted += Number(count)
    }
    return { mode, deleted, keyPrefix }
  }
  const pattern = scanPattern(full)
  for (const node of masters) {
    const strip = Buffer.byteLength(ioredisPrefix(node))
    let cursor = '0'
    do {
      const [next, keys] = await bound.run('SCAN', () =>
        node.scanBuffer(cursor, 'MATCH', pattern, 'COUNT', batchSize),
      )
      cursor = next.toString()
      for (let i = 0; i < keys.length; i += UNLINK_BATCH) {
        const batch = keys.slice(i, i + UNLINK_BATCH).map((key) => key.subarray(strip))
        deleted += await unlink(bound, node, batch, client.isCluster === true)
      }
    } while (cursor !== '0')
  }
  return { mode, deleted, keyPrefix }
}

async function unlink(bound: Bound, node: Redis, keys: readonly Buffer[], cluster: boolean): Promise<number> {
  if (!cluster) return bound.run('UNLINK', () => node.unlink(...keys))
  // One UNLINK per key, in one pipeline to the node that owns them: a multi-key UNLINK across slots is
  // refused on a Cluster.
  const pipe = node.pipeline()
  for (const key of keys) pipe.unlink(key)
  const replies = await bound.run('UNLINK', () => execChecked(pipe))
  return replies.reduce<number>((removed, reply) => removed + Number(reply), 0)
}

function ioredisPrefix(client: Redis | Cluster): string {
  const prefix = (client as { options?: { keyPrefix?: unknown } }).options?.keyPrefix
  return typeof prefix === 'string' ? prefix : ''
}

/** Every Redis call under one timeout, failures mapped to LayerUnavailableError / LayerTimeoutError. */
class Bound {
  constructor(private readonly timeoutMs: number) {}

  run<T>(operation: string, send: () => Promise<T>): Promise<T> {
    const sent = Promise.resolve()
      .then(send)
      .catch((error: unknown) => {
        throw asUnavailable(LAYER, operation, error, 'clearAllCache')
      })
    const ms = this.timeoutMs
    return bounded(sent, ms, () => new LayerTimeoutError(LAYER, `clearAllCache ${operation}`, ms))
  }

  /** Waits (bounded) for the client to be ready: a Cluster only knows its masters once connected. */
  async ready(client: Redis | Cluster): Promise<void> {
    if (client.status === 'ready') return
    if (client.status === 'end') {
      throw new LayerUnavailableError(LAYER, 'clearAllCache: the client is closed (quit or disconnect)')
    }
    if (client.status === 'wait') {
      // A lazyConnect client: connect() resolves once it is ready.
      await this.run('connect', () => client.connect())
      return
    }
    await this.run(
      'connect',
      () =>
        new Promise<void>((resolve, reject) => {
          const onReady = () => {
            client.off('end', onEnd)
            resolve()
          }
          const onEnd = () => {
            client.off('ready', onReady)
            reject(new Error('connection ended'))
          }
          client.once('ready', onReady)
          client.once('end', onEnd)
          setTimeout(() => {
            client.off('ready', onReady)
            client.off('end', onEnd)
          }, this.timeoutMs).unref()
        }),
    )
  }
}
