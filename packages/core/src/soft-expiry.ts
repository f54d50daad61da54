import type { BusOperation } from './distribution'
import type { CacheEntry } from './entry'
import { InvalidOptionError } from './errors'
import type { KeyMatch, TagMatchMode } from './invalidation'
import type { CacheLayer, MaybePromise } from './layer'
import type { LayerFailed, WriteGate } from './write-gate'

/**
 * A copy of `entry` that is stale from now on whatever any clock says (`expired`), with `freshUntil` at
 * `now` at the latest, where its stale-while-revalidate and stale-if-error windows start.
 */
export function markedStale(entry: CacheEntry, now: number): CacheEntry {
  const freshUntil = entry.freshUntil === undefined || entry.freshUntil > now ? now : entry.freshUntil
  return { ...entry, freshUntil, expired: true }
}

/** What soft invalidation needs of its stack. */
export interface SoftExpiryHost {
  readonly layers: readonly CacheLayer[]
  readonly gate: Pick<WriteGate, 'forget' | 'forgetAll'>
  readonly bus: { announce(operations: readonly BusOperation[]): Promise<void> } | undefined
  readonly layerFailed: LayerFailed
}

/** One soft invalidation as each layer runs it: its own expire method, or a removal when it has none. */
interface Expiry {
  readonly operation: string
  /** Fences what is in flight on this instance (before the layers change, and again after). */
  fence(): void
  run(layer: CacheLayer): MaybePromise<readonly string[]> | undefined
  /** What the other instances apply to their memory: the same as a hard invalidation (they drop it). */
  readonly announce: BusOperation
}

/**
 * Soft invalidation (`expire`, `expireByTag`, `expireByPrefix`): the entries stay, stale, so
 * stale-while-revalidate and stale-if-error can still serve them while a reload runs; everything that
 * reads only fresh values (get, mget, a getOrSet without a stale window) misses them at once.
 *
 * In the order a hard invalidation uses: fence what is in flight here (a load or read that began before
 * must not write a fresh copy back), the shared layers (Redis marks each entry in one atomic step and
 * moves the fences loads on every instance compare, so their write-backs are refused too), fence again,
 * the in-process layers, then the bus, whose peers drop their memory copies and read the stale entry from
 * Redis when they need it. A layer that cannot mark entries stale removes them (always safe).
 * Dependents (`dependsOn`) are not touched and warmers do not refill: nothing was removed.
 */
export class SoftExpiry {
  constructor(private readonly state: SoftExpiryHost) {}

  /** Marks `fulls` stale; returns how many entries some layer held. */
  keys(fulls: readonly string[]): Promise<number> {
    const gate = this.state.gate
    return this.expire({
      operation: 'expire',
      fence: () => gate.forget(fulls, false),
      run: (layer) => (layer.expireKeys ? layer.expireKeys(fulls) : this.removed(layer, fulls)),
      announce: { keys: fulls },
    })
  }

  /** Marks every entry carrying any / all of the stored tags stale; returns how many. */
  tagged(storedTags: readonly string[], mode: TagMatchMode): Promise<number> {
    return this.expire({
      operation: 'expireByTag',
      fence: () => this.state.gate.forgetAll(),
      run: (layer) =>
        layer.expireTags ? layer.expireTags(storedTags, mode) : layer.invalidateTags?.(storedTags, mode),
      announce: { tags: storedTags, mode },
    })
  }

  /** Marks every entry whose key `match` covers stale; returns how many. */
  matching(match: KeyMatch): Promise<number> {
    const unable = this.state.layers.find(
      (layer) => layer.expireMatching === undefined && layer.invalidateKeys === undefined,
    )
    if (unable !== undefined) {
      return Promise.reject(
        new InvalidOptionError(`Layer "${unable.name}" cannot expire by prefix (it has no invalidateKeys)`),
      )
    }
    return this.expire({
      operation: 'expireByPrefix',
      fence: () => this.state.gate.forgetAll(),
      run: (layer) => (layer.expireMatching ? layer.expireMatching(match) : layer.invalidateKeys?.(match)),
      announce: { match },
    })
  }

  /** A layer that cannot mark entries stale loses them instead (nothing to count: they were removed). */
  private removed(layer: CacheLayer, fulls: readonly string[]): MaybePromise<readonly string[]> {
    const done = layer.deleteMany(fulls)
    return done instanceof Promise ? done.then(() => []) : []
  }

  private async expire(expiry: Expiry): Promise<number> {
    const state = this.state
    const layers = state.layers
    const found = new Set<string>()
    expiry.fence()
    await Promise.all(
      layers.map(async (layer, i) => {
        if (layer.local) return
        try {
          for (const key of (await expiry.run(layer)) ?? []) found.add(key)
        } catch (error) {
          // Like a delete: an expiry that did not reach Redis must not look done.
          state.layerFailed(i, expiry.operation, undefined, error, 'throw')
        }
      }),
    )
    // A read that began while Redis was marking may have copied the fresh entry into memory: fenced, and
    // what memory holds is marked below.
    expiry.fence()
    layers.forEach((layer, i) => {
      if (!layer.local) return
      try {
        for (const key of (expiry.run(layer) as readonly string[] | undefined) ?? []) found.add(key)
      } catch (error) {
        state.layerFailed(i, expiry.operation, undefined, error, 'throw')
      }
    })
    if (state.bus !== undefined) await state.bus.announce([expiry.announce])
    return found.size
  }
}
