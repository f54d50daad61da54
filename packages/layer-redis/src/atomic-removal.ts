import { type IndexShard, TAG_SEPARATOR } from './index-layout'
import { REMOVE } from './index-scripts'
import type { RedisIO } from './redis-io'

/** Keys that share the shards their index entries may be in (one, or more while a re-shard drains). */
export interface PlaceGroup {
  readonly places: readonly IndexShard[]
  /** Indexes into the keys being removed. */
  readonly keys: number[]
}

/** What the removal needs of the key index. */
export interface RemovalIndex {
  /** `at` (indexes into `fulls`) grouped by their places; one group without places when there is no index. */
  groupByPlaces(fulls: readonly string[], at: readonly number[]): Promise<PlaceGroup[]>
  /** The key's fence counter, which every delete bumps. */
  deletionKey(full: string): string
}

export interface RemovalOutcome {
  /** Per key: whether a value was removed. */
  readonly removed: boolean[]
  /**
   * Keys (indexes) left untouched because writers kept changing their tags under us: the caller removes
   * them another way (the multi-step removal). Empty unless writers race hard.
   */
  readonly left: number[]
}

/** Keys per script: what one command may hold without keeping Redis (and our timeout) busy too long. */
const CHUNK = 500
/** Rounds of "declare the recorded tags' sets and ask again" before the keys are left to the caller. */
const ROUNDS = 4

interface Call {
  /** Indexes of the keys, in KEYS order. */
  readonly keys: number[]
  readonly groups: { readonly places: readonly IndexShard[]; readonly count: number }[]
}

/**
 * Removal on one Redis (not a Cluster: a script here names keys of many slots): each chunk of keys goes in
 * one atomic script (REMOVE) with its index entries, its tag memberships and, for deletes, a bump of its
 * fence counter. No one ever sees a key half-removed, so there is no pending state to publish, and the
 * whole removal costs one round trip when the keys carry no tags beyond the ones the caller names (`tags`:
 * the sets every key leaves, a tag invalidation's own), one more when they do: the script reads the tags
 * recorded for each key, leaves a key whose tags' sets were not declared untouched, and the next round
 * declares them (a script never builds a key name from data). Design: docs/internals/invalidation-design.md.
 */
export class AtomicRemoval {
  constructor(
    private readonly io: RedisIO,
    private readonly index: RemovalIndex,
    private readonly tagSetKey: (tag: string) => string,
    private readonly fenceMs: number,
  ) {}

  async remove(
    operation: string,
    fulls: readonly string[],
    tags: readonly string[],
    countDeletes: boolean,
  ): Promise<RemovalOutcome> {
    const removed: boolean[] = new Array(fulls.length).fill(false)
    const base = [...new Set(tags)]
    /** Per key, recorded tags a script answered with (its sets are declared from then on). */
    const learnt: (Set<string> | undefined)[] = new Array(fulls.length)
    let todo = fulls.map((_, i) => i)
    for (let round = 0; round < ROUNDS && todo.length > 0; round++) {
      const calls = plan(await this.index.groupByPlaces(fulls, todo))
      // One round trip: one command, or one pipeline (NOSCRIPT answers sent again with EVAL).
      const replies = await REMOVE.runAll(
        this.io,
        operation,
        calls.map((call) => this.encode(call, fulls, base, learnt, countDeletes)),
      )
      const next: number[] = []
      calls.forEach((call, c) => {
        const reply = replies[c] as unknown[]
        const status = reply[0] as string
        if (status.length !== call.keys.length) {
          throw new Error(
            `${operation}: the removal script answered ${status.length} of ${call.keys.length} keys`,
          )
        }
        call.keys.forEach((keyIndex, j) => {
          if (status.charCodeAt(j) === ONE) removed[keyIndex] = true
        })
        for (let r = 1; r < reply.length; r += 2) {
          const keyIndex = call.keys[Number(reply[r]) - 1]!
          const known = learnt[keyIndex] ?? new Set<string>()
          for (const tag of String(reply[r + 1]).split(TAG_SEPARATOR)) known.add(tag)
          learnt[keyIndex] = known
          next.push(keyIndex)
        }
      })
      todo = next
    }
    return { removed, left: todo }
  }

  private encode(
    call: Call,
    fulls: readonly string[],
    base: readonly string[],
    learnt: readonly (Set<string> | undefined)[],
    countDeletes: boolean,
  ): { keys: string[]; args: (string | number)[] } {
    const n = call.keys.length
    const keys: string[] = new Array(n)
    for (let j = 0; j < n; j++) keys[j] = fulls[call.keys[j]!]!
    const shardNumbers = new Map<IndexShard, number>()
    const groupArgs: number[] = []
    for (const group of call.groups) {
      groupArgs.push(group.count, group.places.length)
      for (const shard of group.places) {
        let number = shardNumbers.get(shard)
        if (number === undefined) {
          number = shardNumbers.size + 1
          shardNumbers.set(shard, number)
          keys.push(shard.keysKey, shard.expiryKey, shard.tagsKey)
        }
        groupArgs.push(number)
      }
    }
    const declared = [...base]
    const seen = new Set(base)
    for (const keyIndex of call.keys) {
      for (const tag of learnt[keyIndex] ?? []) {
        if (seen.has(tag)) continue
        seen.add(tag)
        declared.push(tag)
      }
    }
    for (const tag of declared) keys.push(this.tagSetKey(tag))
    if (countDeletes) for (let j = 0; j < n; j++) keys.push(this.index.deletionKey(keys[j]!))
    const args: (string | number)[] = [
      n,
      shardNumbers.size,
      declared.length,
      base.length,
      countDeletes ? 1 : 0,
      this.fenceMs,
      ...declared,
      ...groupArgs,
    ]
    return { keys, args }
  }
}

const ONE = '1'.charCodeAt(0)

/** Fills scripts of up to CHUNK keys from the groups, in order (a group may span scripts). */
function plan(groups: readonly PlaceGroup[]): Call[] {
  const calls: Call[] = []
  let current: Call | undefined
  for (const group of groups) {
    let at = 0
    while (at < group.keys.length) {
      if (current === undefined || current.keys.length === CHUNK) {
        current = { keys: [], groups: [] }
        calls.push(current)
      }
      const take = Math.min(CHUNK - current.keys.length, group.keys.length - at)
      for (let j = at; j < at + take; j++) current.keys.push(group.keys[j]!)
      current.groups.push({ places: group.places, count: take })
      at += take
    }
  }
  return calls
}
