// One app instance in its own process (its own connections and L1), for the add/invalidate races: adds a
// row to several lists at once and reports, per list, the row epoch its registration step returned (the
// order of that step against the test's invalidation, as Redis saw it).
import { serveWorker } from '@layercache/test-utils/worker-process'
import { Cluster, Redis } from 'ioredis'
import { EntityCache } from '../../src'
import { type AddOutcome, adder, type Connection, schemas } from './fixtures'

const api = () => {
  const open = new Map<string, { add: ReturnType<typeof adder>; close(): void }>()
  const instance = (connection: Connection, keyPrefix: string) => {
    const name = JSON.stringify([connection, keyPrefix])
    let found = open.get(name)
    if (found === undefined) {
      const client =
        connection.clusterNodes !== undefined
          ? new Cluster([...connection.clusterNodes])
          : new Redis(connection.redisUrl!)
      client.on('error', () => {})
      const cache = new EntityCache({ redis: client, keyPrefix, ...schemas() })
      found = {
        add: adder(cache, client),
        close() {
          cache.close()
          client.disconnect()
        },
      }
      open.set(name, found)
    }
    return found
  }
  return {
    add(
      connection: Connection,
      keyPrefix: string,
      id: number,
      userIds: readonly number[],
      maxDelayMs: number,
    ): Promise<AddOutcome[]> {
      return instance(connection, keyPrefix).add(id, userIds, maxDelayMs)
    },
    close() {
      for (const entry of open.values()) entry.close()
    },
  }
}

export type RaceWorkerApi = ReturnType<typeof api>

serveWorker(api)
