import { Cluster, Redis } from 'ioredis'
import { UsageError } from './cli-io'

export interface ConnectOptions {
  readonly url: string
  readonly cluster: boolean
  readonly requireTls: boolean
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

/** Checks the URL (UsageError), then connects once, without retrying: a failure rejects with the reason. */
export async function connectRedis(options: ConnectOptions): Promise<Redis | Cluster> {
  let url: URL
  try {
    url = new URL(options.url)
  } catch {
    throw new UsageError(`--redis: ${JSON.stringify(options.url)} is not a URL (redis://host:6379)`)
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new UsageError(`--redis: expected a redis:// or rediss:// URL, got ${redactUrl(options.url)}`)
  }
  if (options.requireTls && url.protocol !== 'rediss:') {
    throw new UsageError(`--require-tls: refusing ${redactUrl(options.url)}: it is not a rediss:// (TLS) URL`)
  }
  const client = options.cluster ? clusterClient(url) : standaloneClient(options.url)
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

function standaloneClient(url: string): Redis {
  return new Redis(url, {
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: COMMAND_TIMEOUT_MS,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
  })
}

function clusterClient(url: URL): Cluster {
  return new Cluster([{ host: url.hostname, port: Number(url.port || 6379) }], {
    lazyConnect: true,
    clusterRetryStrategy: () => null,
    redisOptions: {
      username: url.username === '' ? undefined : decodeURIComponent(url.username),
      password: url.password === '' ? undefined : decodeURIComponent(url.password),
      tls: url.protocol === 'rediss:' ? {} : undefined,
      connectTimeout: CONNECT_TIMEOUT_MS,
      commandTimeout: COMMAND_TIMEOUT_MS,
      maxRetriesPerRequest: 1,
    },
  })
}
