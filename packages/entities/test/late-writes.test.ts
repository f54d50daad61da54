/**
 * A write the caller saw fail must not land afterwards, after an invalidation that resolved later (found by
 * the history checker: cluster-faults SEED=786612 and 9024, standalone-faults SEED=329787, and in a soak at
 * cluster-faults SEED=786603). Here: Redis is paused, setEntity times out, another instance invalidates the
 * row and resolves once Redis is back; the row must stay gone.
 *
 * The way the write got through: the server had forgotten its scripts (a restart, a failover to a replica,
 * SCRIPT FLUSH), so it answered the write's EVALSHA with NOSCRIPT once it was resumed, and the script runner
 * sent the script again with EVAL, after setEntity had rejected and after the invalidation ran.
 *
 * Also: a load's write-back after Redis restarted empty. The epochs an invalidation moved before the restart
 * are gone, and a missing epoch reads as 0, the epoch of a row never written: a load that read 0 before
 * wrote its row back over the invalidation. Each target gets servers of its own: the tests pause and
 * restart them.
 */
import { LayerTimeoutError } from '@layercache/core'
import {
  connectionLost,
  connectionReady,
  type RedisClusterHandle,
  type RedisServerHandle,
  startRedisCluster,
  startRedisServer,
} from '@layercache/test-utils'
import { type Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EntityCache } from '../src'
import { type AnyClient, gate, type Post, post, redisKeys, schemas } from './support/fixtures'

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
  /** Restarts the server holding `key` without its data; resolves once both clients reach it again. */
  restartEmpty(key: string): Promise<void>
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
  const restartEmpty = async (key: string) => {
    const { server: node } = await owner(key)
    if (target === 'standalone') {
      const lost = [writer, invalidator].map((client) => connectionLost(client as Redis))
      await node.restart()
      await Promise.all(lost)
      await Promise.all([writer, invalidator].map((client) => connectionReady(client as Redis)))
      return
    }
    await node.restart()
    await cluster.ready()
    for (const client of [writer, invalidator]) {
      for (;;) {
        try {
          await client.exists(key)
          break
        } catch {
          // The client finds the node again; the next attempt goes out once it has.
          await new Promise((resolve) => setImmediate(resolve))
        }
      }
    }
  }
  return { writer, invalidator, owner, restartEmpty }
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

describe.each(['standalone', 'cluster'] as const)('loads across a restart on %s', (target) => {
  it('a load that read before Redis restarted empty does not write back over an invalidation before it', {
    timeout: 60_000,
  }, async () => {
    const { writer, invalidator, restartEmpty } = await open(target)
    const keyPrefix = `restart${++n}`
    const loaderCache = new EntityCache({ redis: writer, keyPrefix, ...schemas() })
    const invalidatorCache = new EntityCache({ redis: invalidator, keyPrefix, ...schemas() })
    const keys = redisKeys(loaderCache.keyPrefix)
    const entered = gate()
    const release = gate()
    // Row 1 was never written: its epoch is missing, which reads as 0.
    const loading = loaderCache.getOrLoadEntity<Post>('post', 1, async () => {
      entered.open()
      await release.promise
      return post(1, 1, 1, 'read before the invalidation')
    })
    await entered.promise // the loader runs only once the row and its epoch were read
    expect(await invalidatorCache.invalidateEntity('post', 1)).toBe(0) // moves the row's epoch…
    await restartEmpty(keys.row(1)) // …which the restart loses
    release.open()
    expect((await loading)?.title).toBe('read before the invalidation') // the answer stands
    expect(await invalidator.get(keys.row(1))).toBeNull()
    expect(await invalidatorCache.getEntity('post', 1)).toBeUndefined()
    loaderCache.close()
    invalidatorCache.close()
  })
})

// One Redis: every epoch and counter the rebuild and the plain list load check is lost with it (on a
// Cluster they live on several masters, and one restarted master leaves the others' fences standing).
describe('list loads across a restart on standalone', () => {
  it('a list rebuild and a plain list load that read before Redis restarted empty are not written', {
    timeout: 60_000,
  }, async () => {
    const { writer, invalidator, restartEmpty } = await open('standalone')
    const keyPrefix = `restartlists${++n}`
    const loaderCache = new EntityCache({ redis: writer, keyPrefix, ...schemas() })
    const invalidatorCache = new EntityCache({ redis: invalidator, keyPrefix, ...schemas() })
    const keys = redisKeys(loaderCache.keyPrefix)
    const release = gate()
    const entered = [gate(), gate()]
    const slowly =
      <T>(i: number, rows: T) =>
      async () => {
        entered[i]!.open()
        await release.promise
        return rows
      }
    const rebuild = loaderCache.getListPage<Post>(
      'feed',
      { userId: 1 },
      { load: slowly(0, [post(1), post(2)]) },
    )
    const plain = loaderCache.getOrLoadList<Post>('userPosts', { userId: 1 }, slowly(1, [post(2)]))
    await Promise.all(entered.map((g) => g.promise)) // both read what they check before loading
    // The database dropped row 2: the row leaves the lists, the plain list is dropped.
    await invalidatorCache.invalidateEntity('post', 2)
    await invalidatorCache.deleteList('userPosts', { userId: 1 })
    await restartEmpty(keys.list('feed', 'userId=1'))
    release.open()
    await Promise.all([rebuild, plain]) // they answer what they loaded
    expect(await invalidator.exists(keys.loaded('feed', 'userId=1'))).toBe(0)
    expect(await invalidator.zscore(keys.list('feed', 'userId=1'), '2')).toBeNull()
    expect(await invalidator.get(keys.plain('userPosts', 'userId=1'))).toBeNull()
    loaderCache.close()
    invalidatorCache.close()
  })
})
