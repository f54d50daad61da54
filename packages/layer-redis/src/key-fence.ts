import calculateSlot from 'cluster-key-slot'

/** Cluster hash slots. */
const SLOTS = 16384

let slotTags: string[] | undefined

/**
 * For each hash slot, a short string that hashes to it. Built once (about 160 000 CRC16s of short
 * strings, a few milliseconds), on the first Cluster write that needs it.
 */
function tagOfSlot(slot: number): string {
  if (slotTags === undefined) {
    const table: string[] = new Array(SLOTS)
    let missing = SLOTS
    for (let i = 0; missing > 0; i++) {
      const candidate = i.toString(36)
      const at = calculateSlot(candidate)
      if (table[at] === undefined) {
        table[at] = candidate
        missing--
      }
    }
    slotTags = table
  }
  return slotTags[slot]!
}

/**
 * The key of `full`'s fence counter: bumped by every removal of the key (delete, and on a Cluster every
 * group invalidation that found it) and compared by a load's write-back in the same atomic step as its
 * SET. On a Cluster it must live in the value's slot, so one script can read it and write the value: its
 * hash tag is a string of that slot (the value's own key may carry a hash tag, or braces that are none).
 */
export function keyFenceOf(prefix: string, full: string, cluster: boolean): string {
  const key = full.slice(prefix.length)
  return cluster ? `${prefix}~d:{${tagOfSlot(calculateSlot(full))}}${key}` : `${prefix}~d:${key}`
}
