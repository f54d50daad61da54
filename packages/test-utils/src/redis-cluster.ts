import { execFile } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { Cluster, type ClusterOptions, Redis } from 'ioredis'
import { closeClient } from './close-client'
import { RedisUnavailableForTestsError } from './errors'
import { findRedisCli } from './executables'
import { type RedisServerHandle, startRedisServer } from './redis-server'

export interface RedisClusterHandle {
  readonly nodes: readonly RedisServerHandle[]
  readonly startupNodes: { host: string; port: number }[]
  /** An ioredis Cluster on startupNodes; closed by stop(). */
  createClient(opts?: ClusterOptions): Cluster
  /** Resolves once every node reports cluster_state:ok and sees every slot (after a node restarted). */
  ready(): Promise<void>
  /** Closes the clients made by createClient, then stops every node. */
  stop(): Promise<void>
}

export interface StartRedisClusterOptions {
  /** Number of masters (no replicas); at least 3, which is what `redis-cli --cluster create` accepts. */
  masters?: number
}

const CLUSTER_NODE_ARGS = [
  ...['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'],
  ...['--cluster-node-timeout', '2000'],
]
const SLOT_COUNT = 16384
const CREATE_TIMEOUT_MS = 30_000
const READY_TIMEOUT_MS = 20_000
const POLL_INTERVAL_MS = 50

const execFileAsync = promisify(execFile)

async function createCluster(cli: string, nodes: readonly RedisServerHandle[]): Promise<void> {
  const addresses = nodes.map((node) => `${node.host}:${node.port}`)
  const args = ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes']
  try {
    await execFileAsync(cli, args, { timeout: CREATE_TIMEOUT_MS })
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string }
    const message = error instanceof Error ? error.message : String(error)
    throw new Error(`${cli} ${args.join(' ')} failed: ${message}\n${stdout}${stderr}`.trimEnd())
  }
}

/** Describes why the cluster is not usable yet, from each node's own point of view; undefined when it is. */
async function clusterProblem(clients: readonly Redis[]): Promise<string | undefined> {
  for (const client of clients) {
    const where = `${client.options.host}:${client.options.port}`
    const info = await client.cluster('INFO')
    if (!/^cluster_state:ok\b/m.test(info)) return `${where} does not report cluster_state:ok`
    const ranges = await client.cluster('SLOTS')
    const covered = ranges.reduce((sum, [start, end]) => sum + end - start + 1, 0)
    if (covered !== SLOT_COUNT) return `${where} sees ${covered} of ${SLOT_COUNT} slots assigned`
  }
  return undefined
}

async function waitForClusterReady(nodes: readonly RedisServerHandle[]): Promise<void> {
  const clients = nodes.map((node) => {
    const client = new Redis({ host: node.host, port: node.port, maxRetriesPerRequest: 1 })
    client.on('error', () => {})
    return client
  })
  try {
    const deadline = Date.now() + READY_TIMEOUT_MS
    for (;;) {
      let problem: string | undefined
      try {
        problem = await clusterProblem(clients)
      } catch (error) {
        problem = error instanceof Error ? error.message : String(error)
      }
      if (problem === undefined) return
      if (Date.now() > deadline) {
        throw new Error(`Redis cluster not ready within ${READY_TIMEOUT_MS} ms: ${problem}`)
      }
      await sleep(POLL_INTERVAL_MS)
    }
  } finally {
    await Promise.all(clients.map((client) => closeClient(client)))
  }
}

class LocalRedisCluster implements RedisClusterHandle {
  readonly startupNodes: { host: string; port: number }[]
  readonly #clients = new Set<Cluster>()

  constructor(readonly nodes: readonly RedisServerHandle[]) {
    this.startupNodes = nodes.map(({ host, port }) => ({ host, port }))
  }

  createClient(opts?: ClusterOptions): Cluster {
    const startupNodes = this.startupNodes.map((node) => ({ ...node }))
    const client = new Cluster(startupNodes, { lazyConnect: false, ...opts })
    this.#clients.add(client)
    return client
  }

  ready(): Promise<void> {
    return waitForClusterReady(this.nodes)
  }

  async stop(): Promise<void> {
    const clients = [...this.#clients]
    this.#clients.clear()
    await Promise.all(clients.map((client) => closeClient(client)))
    await Promise.all(this.nodes.map((node) => node.stop()))
  }
}

/**
 * Spawns `masters` cluster-enabled redis-servers, joins them with `redis-cli --cluster create` (no replicas)
 * and waits until every node reports cluster_state:ok and sees all 16384 slots assigned.
 */
export async function startRedisCluster(opts: StartRedisClusterOptions = {}): Promise<RedisClusterHandle> {
  const masters = opts.masters ?? 3
  if (!Number.isInteger(masters) || masters < 3) {
    throw new RangeError(`startRedisCluster: masters must be an integer >= 3, got ${masters}`)
  }
  const cli = findRedisCli()
  if (cli === undefined) {
    throw new RedisUnavailableForTestsError(
      'redis-cli was not found on PATH; it is needed to build a cluster.',
    )
  }
  const started = await Promise.allSettled(
    Array.from({ length: masters }, () => startRedisServer({ args: CLUSTER_NODE_ARGS })),
  )
  const nodes = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []))
  try {
    const failure = started.find((result) => result.status === 'rejected')
    if (failure) throw failure.reason
    await createCluster(cli, nodes)
    await waitForClusterReady(nodes)
  } catch (error) {
    await Promise.all(nodes.map((node) => node.stop()))
    throw error
  }
  return new LocalRedisCluster(nodes)
}
