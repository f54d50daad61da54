import calculateSlot from 'cluster-key-slot'
import type { Cluster } from 'ioredis'

/**
 * Splits key indices into groups that one Cluster pipeline may carry: keys whose slots are served by
 * the same nodes (ioredis rejects a pipeline spanning nodes). Before the slot map is known, groups per slot.
 */
export function groupBySlotOwner(cluster: Cluster, keys: readonly string[]): number[][] {
  const groups = new Map<string, number[]>()
  keys.forEach((key, index) => {
    const slot = calculateSlot(key)
    const owners = cluster.slots[slot]
    const group = owners && owners.length > 0 ? owners.join(';') : `slot:${slot}`
    const list = groups.get(group)
    if (list) list.push(index)
    else groups.set(group, [index])
  })
  return [...groups.values()]
}
