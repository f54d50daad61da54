import { coarseNow } from '@layercache/core'
import calculateSlot from 'cluster-key-slot'
import type { Cluster, Redis } from 'ioredis'
import type { RedisClient } from './redis-io'

/** A reading older than this is taken again (in the background, by the next write that asks). */
const REFRESH_MS = 30_000
/** A server whose clock is not known yet (a Cluster before its slot map, a failed reading): asked again after this. */
const RETRY_MS = 1000
/** Taken off every deadline: clock drift between readings and Redis' rounding to whole milliseconds. */
const MARGIN_MS = 5
const STANDALONE = ''

/**
 * Each Redis server's clock, as seen from here: the lowest its offset from our clock can be. A write says
 * when its caller gives up on it, in the server's own time, so that a server reaching it later (it was
 * paused, or ioredis sent it again after a reconnect) refuses it instead of landing a value over a newer
 * one after the caller was told it failed (see fenced-write.ts). No host's clock has to agree with another's:
 * the offset is measured with TIME, and the deadline is compared with the same server's TIME.
 *
 * The lower bound makes the deadline early, never late: a server reading TIME at our moment `t` answers at
 * least `t + offset`, so a write it runs before its deadline ran before the caller gave up.
 */
export class RedisClock {
  /** Per server (its "host:port" on a Cluster, STANDALONE otherwise): Redis ms minus our ms, at the least. */
  private readonly offsets = new Map<string, number>()
  private readAt = Number.NEGATIVE_INFINITY
  private reading: Promise<void> | undefined
  private readLosses = -1

  constructor(
    private readonly client: RedisClient,
    /** The client's lost connections so far: a server may be another one after a reconnect. */
    private readonly losses: () => number,
  ) {}

  /**
   * The latest time, in the clock of the server holding `fullKey`, at which a write given up on at our
   * `giveUpAt` (ms) may still run; undefined while that server's clock is not known yet (the write then
   * carries no deadline, as before this existed, and the clock is read for the next one).
   */
  deadlineOf(fullKey: string, giveUpAt: number): number | undefined {
    const offset = this.offsets.get(this.serverOf(fullKey))
    if (this.reading === undefined) {
      const age = coarseNow() - this.readAt
      const due = offset === undefined ? RETRY_MS : REFRESH_MS
      if (age > due || this.readLosses !== this.losses()) this.read()
    }
    return offset === undefined ? undefined : Math.floor(giveUpAt + offset) - MARGIN_MS
  }

  /** A server refused a write as late although our caller was still waiting: its clock moved. Read again. */
  moved(): void {
    if (this.reading === undefined) this.read()
  }

  private serverOf(fullKey: string): string {
    if (!this.client.isCluster) return STANDALONE
    return (this.client as Cluster).slots[calculateSlot(fullKey)]?.[0] ?? STANDALONE
  }

  private read(): void {
    const losses = this.losses()
    const servers: [string, Redis][] = this.client.isCluster
      ? (this.client as Cluster)
          .nodes('master')
          .map((node) => [`${node.options.host}:${node.options.port}`, node])
      : [[STANDALONE, this.client as Redis]]
    this.reading = Promise.allSettled(
      servers.map(async ([server, node]) => {
        const [seconds, micros] = await node.time()
        const after = Date.now()
        // Redis read its clock before `after`: the offset is at least this.
        this.offsets.set(server, Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - after)
      }),
    ).then(() => {
      this.readAt = coarseNow()
      this.readLosses = losses
      this.reading = undefined
    })
  }
}
