import { type BoundOptions, readBoundOptions } from './bound-options'
import { BoundedRelation } from './bounded-relation'

export type DependencyGraphOptions = BoundOptions

/**
 * Which cached keys were derived from which others: `setDependencies(key, [a, b])` means a change to
 * `a` or `b` must also invalidate `key`. Bounded to `maxKeys` keys with dependencies: beyond that the
 * oldest-tracked key loses its edges and `onEvict(key)` asks the owner to drop it from its cache.
 *
 * Deleting a key removes only its own edges: keys that depend on it still do, and are invalidated
 * when it changes again.
 */
export class DependencyGraph {
  private readonly relation: BoundedRelation

  constructor(options?: DependencyGraphOptions) {
    this.relation = new BoundedRelation(readBoundOptions(options, 'DependencyGraph'))
  }

  /** Number of tracked keys (keys with at least one dependency). */
  get size(): number {
    return this.relation.size
  }

  /** Replaces the dependencies of `key` (none: the key is forgotten). */
  setDependencies(key: string, dependsOn: readonly string[]): void {
    this.relation.set(key, dependsOn)
  }

  delete(key: string): boolean {
    return this.relation.delete(key)
  }

  has(key: string): boolean {
    return this.relation.has(key)
  }

  dependenciesOf(key: string): string[] {
    return [...this.relation.targetsOf(key)]
  }

  /** Keys that depend on `key` directly. */
  dependentsOf(key: string): string[] {
    return [...this.relation.sourcesOf(key)]
  }

  /**
   * Every key that depends on any of `keys`, directly or transitively, excluding `keys` themselves
   * (even when a cycle leads back to them). Breadth-first with a visited set: cycles terminate and
   * deep chains cannot overflow the stack.
   */
  closure(keys: readonly string[]): string[] {
    const seen = new Set(keys)
    const queue = [...seen]
    const found: string[] = []
    for (let head = 0; head < queue.length; head++) {
      for (const dependent of this.relation.sourcesOf(queue[head]!)) {
        if (seen.has(dependent)) continue
        seen.add(dependent)
        queue.push(dependent)
        found.push(dependent)
      }
    }
    return found
  }

  clear(): void {
    this.relation.clear()
  }
}
