// The Redis a history run works against: one spawned redis-server, or a local 3-master Cluster. The
// runner owns its processes (faults pause, kill and restart them), so it never uses REDIS_URL.
import { Cluster, Redis } from 'ioredis'
import { closeClient } from '../close-client'
import { startRedisCluster } from '../redis-cluster'
import { type RedisServerHandle, startRedisServer } from '../redis-server'

export type Topology = 'standalone' | 'cluster'

export interface HistoryTarget {
  readonly topology: Topology
  /** The server, or the cluster's masters. */
  readonly servers: readonly RedisServerHandle[]
  readonly redisUrl?: string
  readonly clusterNodes?: readonly { host: string; port: number }[]
  /** A plain client (no injected latency), closed by stop(). */
  connect(): Redis | Cluster
  /** Continues paused servers and starts stopped ones again (empty). */
  heal(): Promise<void>
  stop(): Promise<void>
}

class Target implements HistoryTarget {
  readonly #clients: (Redis | Cluster)[] = []

  constructor(
    readonly topology: Topology,
    readonly servers: readonly RedisServerHandle[],
    private readonly release: () => Promise<void>,
  ) {}

  get redisUrl(): string | undefined {
    return this.topology === 'standalone' ? this.servers[0]!.url : undefined
  }

  get clusterNodes(): { host: string; port: number }[] | undefined {
    return this.topology === 'cluster' ? this.servers.map(({ host, port }) => ({ host, port })) : undefined
  }

  connect(): Redis | Cluster {
    const retryStrategy = () => 50
    const client =
      this.topology === 'cluster'
        ? new Cluster(this.clusterNodes!, { clusterRetryStrategy: retryStrategy })
        : new Redis(this.redisUrl!, { retryStrategy })
    client.on('error', () => {})
    this.#clients.push(client)
    return client
  }

  async heal(): Promise<void> {
    for (const server of this.servers) {
      if (!server.running) await server.restart()
      server.resume()
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.#clients.splice(0).map((client) => closeClient(client)))
    await this.release()
  }
}

/** Starts a redis-server, or a 3-master Cluster, for history runs (several runs may share it). */
export async function startHistoryTarget(topology: Topology): Promise<HistoryTarget> {
  if (topology === 'cluster') {
    const cluster = await startRedisCluster({ masters: 3 })
    return new Target('cluster', cluster.nodes, () => cluster.stop())
  }
  const server = await startRedisServer()
  return new Target('standalone', [server], () => server.stop())
}
