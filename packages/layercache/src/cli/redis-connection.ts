import { readFileSync } from 'node:fs'
import { Cluster, Redis } from 'ioredis'
import { UsageError } from './cli-io'

export interface ConnectOptions {
  readonly url: string
  readonly cluster: boolean
  /** Refuse anything but TLS (a rediss:// URL, or --tls). */
  readonly requireTls: boolean
  /** Connect with TLS even with a redis:// URL. */
  readonly tls?: boolean
  /** A PEM file of the CA that signed the server's certificate (implies TLS). */
  readonly tlsCa?: string | undefined
  /** Production mode (--production or NODE_ENV=production): plaintext is refused... */
  readonly production?: boolean
  /** ...unless this says it is intended (--allow-plaintext). */
  readonly allowPlaintext?: boolean
}

/** What the connection needs besides the options: a second client for a subscriber, say. */
export interface ConnectRole {
  /** A Cluster client for sharded pub/sub (`shardedSubscribers: true`). */
  readonly shardedSubscriber?: boolean
}

const CONNECT_TIMEOUT_MS = 5000
const COMMAND_TIMEOUT_MS = 10_000

/** The URL without its password, for messages. */
export function redactUrl(text: string): string {
  try {
    const url = new URL(text)
    if (url.password !== '') url.password = '***'
    return url.toString()
  } catch {
    return '<unparseable URL>'
  }
}

interface Target {
  readonly url: URL
  readonly tls: { ca?: Buffer } | undefined
}

/**
 * Checks the URL and the TLS policy (UsageError, before anything connects): a redis:// or rediss:// URL;
 * with --require-tls, TLS; in production mode, TLS unless --allow-plaintext. Reads the --tls-ca file.
 */
export function checkTarget(options: ConnectOptions): Target {
  let url: URL
  try {
    url = new URL(options.url)
  } catch {
    throw new UsageError(`--redis: ${JSON.stringify(options.url)} is not a URL (redis://host:6379)`)
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new UsageError(`--redis: expected a redis:// or rediss:// URL, got ${redactUrl(options.url)}`)
  }
  const tls = url.protocol === 'rediss:' || options.tls === true || options.tlsCa !== undefined
  if (options.requireTls && !tls) {
    throw new UsageError(
      `--require-tls: refusing ${redactUrl(options.url)}: it is not a rediss:// (TLS) URL (or pass --tls)`,
    )
  }
  if (options.production === true && !tls && options.allowPlaintext !== true) {
    throw new UsageError(
      `refusing plaintext ${redactUrl(options.url)} in production mode (--production or ` +
        'NODE_ENV=production): use a rediss:// URL or --tls, or pass --allow-plaintext if the network ' +
        'is trusted; nothing was touched',
    )
  }
  if (!tls) return { url, tls: undefined }
  if (options.tlsCa === undefined) return { url, tls: {} }
  try {
    return { url, tls: { ca: readFileSync(options.tlsCa) } }
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    throw new UsageError(`--tls-ca: cannot read ${JSON.stringify(options.tlsCa)}: ${reason}`)
  }
}

/**
 * Checks the URL and the TLS policy (UsageError), then connects once, without retrying: a failure
 * rejects with the reason.
 */
export async function connectRedis(
  options: ConnectOptions,
  role: ConnectRole = {},
): Promise<Redis | Cluster> {
  const target = checkTarget(options)
  const client = options.cluster
    ? clusterClient(target, role.shardedSubscriber === true)
    : standaloneClient(options.url, target)
  // connect() only says "Connection is closed": the error events have the reason (ECONNREFUSED, TLS…).
  const reasons: string[] = []
  const note = (error: unknown) => {
    const reason = error instanceof Error ? error.message : String(error)
    if (!reasons.includes(reason)) reasons.push(reason)
  }
  client.on('error', note)
  try {
    await client.connect()
  } catch (error) {
    client.disconnect()
    note(error)
    throw new Error(`cannot connect to Redis at ${redactUrl(options.url)}: ${reasons.join('; ')}`)
  }
  return client
}

function standaloneClient(url: string, target: Target): Redis {
  return new Redis(url, {
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: COMMAND_TIMEOUT_MS,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
    ...(target.tls === undefined ? {} : { tls: target.tls }),
  })
}

function clusterClient({ url, tls }: Target, shardedSubscribers: boolean): Cluster {
  return new Cluster([{ host: url.hostname, port: Number(url.port || 6379) }], {
    lazyConnect: true,
    clusterRetryStrategy: () => null,
    shardedSubscribers,
    redisOptions: {
      username: url.username === '' ? undefined : decodeURIComponent(url.username),
      password: url.password === '' ? undefined : decodeURIComponent(url.password),
      tls,
      connectTimeout: CONNECT_TIMEOUT_MS,
      commandTimeout: COMMAND_TIMEOUT_MS,
      maxRetriesPerRequest: 1,
    },
  })
}
