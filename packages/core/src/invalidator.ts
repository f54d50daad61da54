import type { BusOperation } from './distribution'
import { InvalidOptionError, type LayerCacheError } from './errors'
import { generationPrefix } from './generations'
import type { KeyMatch, TagMatchMode } from './invalidation'
import type { CacheLayer, MaybePromise } from './layer'
import type { StackState } from './stack-state'

/** Dependencies are stored as tags under a prefix callers' tags cannot collide with (it holds a control char). */
export const DEPENDENCY_TAG = '\u0001dep:'

export function dependencyTag(fullKey: string): string {
  return DEPENDENCY_TAG + fullKey
}

/**
 * How a stack removes entries, for every kind of invalidation (deletes, tags, prefixes, patterns,
 * dependents, old generations): in every layer, fenced through the write gate so no read or load in
 * flight writes back, announced on the bus, with warmers refilling only once it is over. CacheStack
 * validates and scopes the arguments; this does the removing. Shared by a stack and its namespaces.
 */
export class Invalidator {
  constructor(private readonly state: StackState) {}

  /** A prefix or pattern invalidation in every layer, with its dependents; returns how many went. */
  async matching(match: KeyMatch): Promise<number> {
    const state = this.state
    const unable = state.layers.find((layer) => layer.invalidateKeys === undefined)
    if (unable !== undefined) {
      throw new InvalidOptionError(
        `Layer "${unable.name}" cannot invalidate by prefix or pattern (it has no invalidateKeys)`,
      )
    }
    const possible = state.dependentsPossible()
    const found = await this.removeEverywhere('invalidateKeys', (layer) => layer.invalidateKeys!(match), {
      match,
    })
    const count = found.size + (await this.cascadeIfDependents([...found], possible))
    state.stats.invalidations++
    return count
  }

  /** Removes the entries carrying (any / all of) the stored tags from every layer; returns their keys. */
  removeTagged(storedTags: readonly string[], mode: TagMatchMode): Promise<Set<string>> {
    return this.removeEverywhere('invalidateTags', (layer) => layer.invalidateTags?.(storedTags, mode), {
      tags: storedTags,
      mode,
    })
  }

  /**
   * A group invalidation: every layer removes what it finds (`find`), then each layer also removes what
   * the others found; then the other instances are told (`announce`, with a bus). Returns the keys removed.
   */
  private removeEverywhere(
    operation: string,
    find: (layer: CacheLayer) => MaybePromise<readonly string[]> | undefined,
    announce: BusOperation,
  ): Promise<Set<string>> {
    return this.holdingRefills(async () => {
      const found = await this.removeFound(operation, find)
      const bus = this.state.bus
      if (bus !== undefined) await bus.announce([announce])
      return found
    })
  }

  /** Runs an invalidation; warmers refill only once no invalidation is running (see Warmers). */
  async holdingRefills<T>(work: () => Promise<T>): Promise<T> {
    const warmers = this.state.warmers
    warmers.begin()
    try {
      return await work()
    } finally {
      warmers.end()
    }
  }

  private async removeFound(
    operation: string,
    find: (layer: CacheLayer) => MaybePromise<readonly string[]> | undefined,
  ): Promise<Set<string>> {
    const state = this.state
    const layers = state.layers
    // A group invalidation cannot name the keys being loaded right now: fence them all, conservatively.
    state.gate.forgetAll()
    const ask = async (i: number) => {
      try {
        return await find(layers[i]!)
      } catch (error) {
        state.layerFailed(i, operation, undefined, error, 'throw')
        return undefined
      }
    }
    // Remote layers first: their commands leave before the in-process layers' synchronous work runs.
    const asked: Promise<readonly string[] | undefined>[] = new Array(layers.length)
    for (let i = 0; i < layers.length; i++) if (!layers[i]!.local) asked[i] = ask(i)
    for (let i = 0; i < layers.length; i++) if (layers[i]!.local) asked[i] = ask(i)
    const foundBy = await Promise.all(asked)
    const found = new Set(foundBy.flatMap((keys) => keys ?? []))
    state.gate.forget(found, false)
    state.invalidated(found)
    // A key one layer matched may sit in another that did not index it (e.g. a write Redis refused in
    // bypass mode): remove it there too, without repeating the work of layers that already did.
    // In-process layers are covered by the final pass below.
    await Promise.all(
      layers.map(async (layer, i) => {
        if (layer.local || (foundBy[i]?.length ?? 0) === found.size) return
        const own = new Set(foundBy[i] ?? [])
        const rest = [...found].filter((key) => !own.has(key))
        if (rest.length === 0) return
        try {
          await layer.deleteMany(rest)
        } catch (error) {
          state.layerFailed(i, operation, undefined, error, 'throw')
        }
      }),
    )
    // A read that began while the lower layers were still removing may have copied an old value back
    // into memory (and an in-process layer may hold what only another layer matched): fence what is
    // still in flight and drop those copies. The match is applied to memory again, not only the keys
    // found: a key another instance unlinked first is not among them, yet a read here may have copied it.
    state.gate.forgetAll()
    for (const layer of layers) if (layer.local) find(layer)
    state.gate.forget(found)
    return found
  }

  /**
   * Invalidates, transitively, every entry written with `dependsOn` one of `fullKeys`. Dependencies are
   * stored as tags, so this is as race-safe and as shared across instances as tag invalidation. Cycles
   * end because a key is only followed once. Returns how many dependents were removed.
   */
  private async cascade(fullKeys: readonly string[]): Promise<number> {
    const seen = new Set(fullKeys)
    let frontier = [...fullKeys]
    let removed = 0
    while (frontier.length > 0) {
      const found = await this.removeTagged(frontier.map(dependencyTag), 'any')
      frontier = [...found].filter((key) => !seen.has(key))
      for (const key of frontier) seen.add(key)
      removed += frontier.length
    }
    return removed
  }

  /**
   * Dependents are looked up (two more pipelined round trips) once any instance has written a `dependsOn`
   * (a mark in the shared layer, or this process's own writes); until then invalidations skip the cascade.
   */
  async cascadeIfDependents(
    fullKeys: readonly string[],
    possible: Promise<boolean> = this.state.dependentsPossible(),
  ): Promise<number> {
    if (fullKeys.length === 0) return 0
    return (await possible) ? this.cascade(fullKeys) : 0
  }

  /** Removes an old generation's keys from the shared layers, page by page; reports through an event. */
  cleanUpGeneration(generation: number, batchSize: number): void {
    const state = this.state
    const scope = generationPrefix(generation)
    const shared = state.layers.filter((layer) => !layer.local && layer.invalidateKeys !== undefined)
    Promise.all(shared.map((layer) => layer.invalidateKeys!({ scope }, { batchSize }))).then(
      (removed) => {
        const count = removed.reduce((sum, keys) => sum + keys.length, 0)
        if (state.events.listening('generationCleanup'))
          state.events.emit('generationCleanup', { generation, removed: count })
      },
      (error: unknown) => {
        if (state.events.listening('generationCleanup'))
          state.events.emit('generationCleanup', { generation, removed: 0, error })
      },
    )
  }

  /** Deletes keys (full) from every layer and tells the other instances. */
  deleteKeys(fulls: readonly string[]): Promise<void> {
    return this.holdingRefills(() => this.deleteEverywhere(fulls))
  }

  private async deleteEverywhere(fulls: readonly string[]): Promise<void> {
    const state = this.state
    // Memory is dropped with the other layers below (an in-process layer is one of them).
    state.gate.forget(fulls, false)
    state.stats.deletes += fulls.length
    const layers = state.layers
    let firstFailure: LayerCacheError | undefined
    await Promise.all(
      layers.map(async (layer, i) => {
        try {
          await (fulls.length === 1 ? layer.delete(fulls[0]!) : layer.deleteMany(fulls))
        } catch (error) {
          try {
            this.state.layerFailed(i, 'delete', fulls[0], error, 'throw')
          } catch (typed) {
            firstFailure ??= typed as LayerCacheError
          }
        }
      }),
    )
    // A read that began while the shared layers were still removing may have copied the old value into
    // memory (its ticket is newer than the first fence): fence what is still in flight and drop the copies.
    state.gate.forget(fulls)
    if (firstFailure) throw firstFailure
    // Without a bus, no extra await (deletes are frequent).
    if (state.bus !== undefined) await state.bus.announce([{ keys: fulls }])
    state.invalidated(fulls)
    if (state.events.listening('delete')) for (const key of fulls) state.events.emit('delete', { key })
  }
}
