import { LayerUnavailableError } from '@layercache/core'
import type { Cluster, Redis } from 'ioredis'

/** Lost connections of one client, counted by a single pair of listeners however many layers share it. */
const lossCounters = new WeakMap<Redis | Cluster, { losses: number }>()

function lossCounterOf(client: Redis | Cluster): { losses: number } {
  let counter = lossCounters.get(client)
  if (counter === undefined) {
    const created = { losses: 0 }
    const lost = () => {
      created.losses++
    }
    client.on('close', lost)
    if (client.isCluster) {
      // A node's connection that drops and comes back (a restarted node) may not leave the pool.
      const cluster = client as Cluster
      const watch = (node: Redis) => void node.on('close', lost)
      for (const node of cluster.nodes('all')) watch(node)
      cluster.on('+node', watch)
      cluster.on('-node', lost)
    }
    lossCounters.set(client, created)
    counter = created
  }
  return counter
}

/**
 * Refuses calls at once while a client that was connected reconnects: ioredis would queue them and send
 * them when Redis is back, so a caller would wait (degrade, never hang) and a write it saw fail could
 * still land later over a newer value. Before the first connection, calls wait for it.
 */
export class ConnectionGuard {
  private everReady: boolean
  private readonly lossCounter: { losses: number }

  constructor(
    private readonly client: Redis | Cluster,
    /** The layer name errors carry. */
    private readonly name: string,
  ) {
    this.lossCounter = lossCounterOf(client)
    this.everReady = client.status === 'ready'
    if (!this.everReady) {
      client.once('ready', () => {
        this.everReady = true
      })
    }
  }

  /**
   * Connections the client lost so far (a Cluster: any node's). A load whose fence snapshot was read on an
   * earlier connection cannot trust it: Redis may have restarted empty meanwhile and lost the counters a
   * later invalidation bumped, so its write-back is refused.
   */
  get losses(): number {
    return this.lossCounter.losses
  }

  /** The error to refuse `operation` with now, or undefined when it may be sent. */
  refusal(operation: string): LayerUnavailableError | undefined {
    if (!this.everReady || this.client.status === 'ready') return undefined
    return new LayerUnavailableError(
      this.name,
      `${this.name}: ${operation} refused, Redis connection is ${this.client.status}`,
    )
  }
}
