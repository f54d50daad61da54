import type { RedisClient } from '@layercache/layer-redis'
import type { Cluster, Redis } from 'ioredis'

/** What INFO says about one master: version, mode, memory. */
export interface NodeInfo {
  readonly address: string
  readonly version: string
  /** `redis_mode`: standalone, cluster or sentinel. */
  readonly mode: string
  readonly usedMemory: number
  readonly usedMemoryHuman: string
  readonly usedMemoryPeakHuman: string
  /** 0: no limit. */
  readonly maxmemory: number
  readonly maxmemoryHuman: string
  readonly maxmemoryPolicy: string
  readonly fragmentationRatio: number | undefined
  /** DBSIZE of the selected database: every key, the cache's and anything else's. */
  readonly dbsize: number
}

/** The masters: the one node of a standalone Redis, every master of a Cluster. */
export function mastersOf(client: RedisClient): Redis[] {
  return client.isCluster ? (client as Cluster).nodes('master') : [client as Redis]
}

function parseInfo(text: string): Map<string, string> {
  const fields = new Map<string, string>()
  for (const line of text.split(/\r?\n/)) {
    const at = line.indexOf(':')
    if (at > 0 && !line.startsWith('#')) fields.set(line.slice(0, at), line.slice(at + 1))
  }
  return fields
}

export async function nodeInfo(node: Redis): Promise<NodeInfo> {
  const [server, memory, dbsize] = await Promise.all([
    node.info('server'),
    node.info('memory'),
    node.dbsize(),
  ])
  const fields = new Map([...parseInfo(server), ...parseInfo(memory)])
  const text = (name: string) => fields.get(name) ?? 'unknown'
  const number = (name: string) => {
    const value = Number(fields.get(name))
    return Number.isFinite(value) ? value : 0
  }
  const ratio = Number(fields.get('mem_fragmentation_ratio'))
  return {
    address: `${node.options.host}:${node.options.port}`,
    version: text('redis_version'),
    mode: text('redis_mode'),
    usedMemory: number('used_memory'),
    usedMemoryHuman: text('used_memory_human'),
    usedMemoryPeakHuman: text('used_memory_peak_human'),
    maxmemory: number('maxmemory'),
    maxmemoryHuman: text('maxmemory_human'),
    maxmemoryPolicy: text('maxmemory_policy'),
    fragmentationRatio: Number.isFinite(ratio) ? ratio : undefined,
    dbsize,
  }
}
