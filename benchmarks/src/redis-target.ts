import { Redis, type RedisOptions } from 'ioredis'

/** The Redis the benchmarks talk to, and how to leave it as it was found. */
export interface RedisTarget {
  readonly url: string
  /** Human-readable origin, for the report. */
  readonly source: string
  /** True when the server was started by this run, on this machine. */
  readonly spawned: boolean
  /** Every key the benchmarks write starts with this; nothing else is ever touched. */
  readonly prefix: string
  /** Opens a client; all clients opened here are closed by `close()`. */
  connect(options?: RedisOptions): Promise<Redis>
  /** Deletes this run's keys, disconnects every client, and stops the server if we started it. */
  close(): Promise<void>
}

/** Glob-escapes a literal so SCAN MATCH treats it verbatim. */
function globLiteral(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`)
}

async function deleteOwnKeys(client: Redis, prefix: string): Promise<number> {
  let cursor = '0'
  let deleted = 0
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${globLiteral(prefix)}*`, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) deleted += await client.unlink(...keys)
  } while (cursor !== '0')
  return deleted
}

/**
 * REDIS_URL when set (used with a run-unique key prefix; only those keys are deleted afterwards),
 * otherwise a throwaway redis-server started through @layercache/test-utils and stopped at the end.
 */
export async function getRedisTarget(): Promise<RedisTarget> {
  const runId = `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`
  const prefix = `layercache-bench:${runId}:`
  const fromEnv = process.env.REDIS_URL
  let url: string
  let source: string
  let stopServer: (() => Promise<void>) | undefined
  if (fromEnv !== undefined && fromEnv !== '') {
    url = fromEnv
    source = 'REDIS_URL (shared; only keys under a run-unique prefix were written and deleted)'
  } else {
    // Imported lazily: with REDIS_URL nothing from the test harness is loaded.
    const { startRedisServer } = await import('@layercache/test-utils')
    const server = await startRedisServer()
    url = server.url
    source = `throwaway redis-server on ${server.host}:${server.port}, started for this run and stopped after`
    stopServer = () => server.stop()
  }

  const clients: Redis[] = []
  const connect = async (options: RedisOptions = {}): Promise<Redis> => {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, ...options })
    clients.push(client)
    await client.connect()
    return client
  }

  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    try {
      const ready = clients.find((c) => c.status === 'ready')
      if (ready !== undefined) await deleteOwnKeys(ready, prefix)
    } finally {
      await Promise.all(
        clients.map(async (c) => {
          try {
            await c.quit()
          } catch {
            c.disconnect()
          }
        }),
      )
      if (stopServer !== undefined) await stopServer()
    }
  }

  return { url, source, spawned: stopServer !== undefined, prefix, connect, close }
}

/** `redis_version` from INFO server. */
export async function redisVersion(client: Redis): Promise<string> {
  const info = await client.info('server')
  return /^redis_version:(\S+)/m.exec(info)?.[1] ?? 'unknown'
}
