/**
 * A write the caller saw fail must not land afterwards, after an invalidation that resolved later (found by
 * the history checker: cluster-faults SEED=786612 and 9024, standalone-faults SEED=329787, and in a soak at
 * cluster-faults SEED=786603). Here: Redis is paused, setEntity times out, another instance invalidates the
 * row and resolves once Redis is back; the row must stay gone.
 *
 * The way the write got through: the server had forgotten its scripts (a restart, a failover to a replica,
 * SCRIPT FLUSH), so it answered the write's EVALSHA with NOSCRIPT once it was resumed, and the script runner
 * sent the script again with EVAL, after setEntity had rejected and after the invalidation ran. Each target
 * gets servers of its own: the test pauses them.
 */
import { LayerTimeoutError } from '@layercache/core'
import {
  type RedisClusterHandle,
  type RedisServerHandle,
  startRedisCluster,
  startRedisServer,
} from '@layercache/test-utils'
import { type Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EntityCache } from '../src'
import { type AnyClient, post, redisKeys, schemas } from './support/fixtures'

const TIMEOUT = 200

let server: RedisServerHandle
let cluster: RedisClusterHandle
const clients: AnyClient[] = []
let n = 0

beforeAll(async () => {
  ;[server, cluster] = await Promise.all([startRedisServer(), startRedisCluster({ masters: 3 })])
})
afterAll(async () => {
  for (const client of clients) client.disconnect()
  await Promise.all([server?.stop(), cluster?.stop()])
})

interface Target {
  readonly writer: AnyClient
  readonly invalidator: AnyClient
  /** The server holding `key`, and the writer's own connection to it. */
  owner(key: string): Promise<{ server: RedisServerHandle; writerConnection: Redis }>
}

async function open(target: 'standalone' | 'cluster'): Promise<Target> {
  const connect = (): AnyClient => {
    const client = target === 'standalone' ? new Redis(server.url) : cluster.createClient()
    client.on('error', () => {})
    clients.push(client)
    return client
  }
  const writer = connect()
  const invalidator = connect()
  await Promise.all([writer.set('warmup', '1'), invalidator.set('warmup', '1')])
  const owner = async (key: string) => {
    if (target === 'standalone') return { server, writerConnection: writer as Redis }
    for (const connection of (writer as Cluster).nodes('master')) {
      // Only the master serving the key's slot answers; the others redirect (MOVED).
      const serves = await connection.exists(key).then(
        () => true,
        () => false,
      )
      const handle = cluster.nodes.find((node) => node.port === connection.options.port)
      if (serves && handle !== undefined) return { server: handle, writerConnection: connection }
    }
    throw new Error(`no master serves ${key}`)
  }
  return { writer, invalidator, owner }
}

/** Resolves once the writer has its answer to every EVALSHA it sent so far (a NOSCRIPT one included). */
function trackEvalsha(client: AnyClient): () => Promise<void> {
  const target = client as unknown as { evalsha: (...args: unknown[]) => Promise<unknown> }
  const original = target.evalsha
  const replies: Promise<unknown>[] = []
  target.evalsha = (...args: unknown[]) => {
    const reply = original.apply(client, args)
    replies.push(reply.catch(() => undefined))
    return reply
  }
  return async () => {
    await Promise.all(replies)
  }
}

describe.each(['standalone', 'cluster'] as const)('late writes on %s', (target) => {
  it('setEntity that timed out while Redis was paused does not land after a later invalidateEntity', {
    timeout: 30_000,
  }, async () => {
    const { writer, invalidator, owner } = await open(target)
    const keyPrefix = `late${++n}`
    const writerCache = new EntityCache({ redis: writer, keyPrefix, commandTimeout: TIMEOUT, ...schemas() })
    const invalidatorCache = new EntityCache({ redis: invalidator, keyPrefix, ...schemas() })
    const keys = redisKeys(writerCache.keyPrefix)
    const { server: node, writerConnection } = await owner(keys.row(1))
    const repliesIn = trackEvalsha(writer)

    // The row's server forgets its scripts; the invalidator's first call loads its script again (EVAL),
    // so only the writer's script is unknown there.
    await writerConnection.script('FLUSH')
    await invalidatorCache.invalidateEntity('post', 1)

    let invalidation: Promise<number>
    node.pause()
    try {
      await expect(writerCache.setEntity('post', post(1, 1, 1, 'old'))).rejects.toBeInstanceOf(
        LayerTimeoutError,
      )
      // Issued after the write failed: it is queued on its socket behind the writer's EVALSHA.
      invalidation = invalidatorCache.invalidateEntity('post', 1)
      await new Promise((resolve) => setImmediate(resolve))
    } finally {
      node.resume()
    }
    await invalidation
    // The writer's EVALSHA was answered (NOSCRIPT); whatever it sent after that answer was handled (its
    // continuations ran before this macrotask), and has run once a PING sent behind it is answered.
    await repliesIn()
    await new Promise((resolve) => setImmediate(resolve))
    await writerConnection.ping()

    expect(await invalidator.get(keys.row(1))).toBeNull()
    expect(await invalidatorCache.getEntity('post', 1)).toBeUndefined()
    writerCache.close()
    invalidatorCache.close()
  })
})
