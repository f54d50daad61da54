import type { Bound } from './bound-options'

const EMPTY: ReadonlySet<string> = new Set()

/**
 * A many-to-many relation from sources (cache keys) to targets (tags, dependencies), indexed both
 * ways. At most `maxKeys` sources are tracked: a new source beyond that drops the oldest-tracked one
 * and reports it through `onEvict`, after the relation is consistent again (so the callback may call
 * back into it).
 */
export class BoundedRelation {
  // Insertion order is the tracking order; re-setting a source moves it to the end.
  private readonly forward = new Map<string, Set<string>>()
  private readonly backward = new Map<string, Set<string>>()

  constructor(private readonly bound: Bound) {}

  get size(): number {
    return this.forward.size
  }

  /** Replaces the targets of `source`; an empty list forgets the source. */
  set(source: string, targets: readonly string[]): void {
    const next = new Set(targets)
    const previous = this.forward.get(source)
    if (next.size === 0) {
      if (previous !== undefined) this.delete(source)
      return
    }
    if (previous !== undefined) {
      for (const target of previous) if (!next.has(target)) this.unlink(source, target)
      for (const target of next) if (!previous.has(target)) this.link(source, target)
      this.forward.delete(source)
      this.forward.set(source, next)
      return
    }
    for (const target of next) this.link(source, target)
    this.forward.set(source, next)
    while (this.forward.size > this.bound.maxKeys) {
      const oldest = this.forward.keys().next().value as string
      this.delete(oldest)
      this.bound.onEvict?.(oldest)
    }
  }

  delete(source: string): boolean {
    const targets = this.forward.get(source)
    if (targets === undefined) return false
    this.forward.delete(source)
    for (const target of targets) this.unlink(source, target)
    return true
  }

  has(source: string): boolean {
    return this.forward.has(source)
  }

  targetsOf(source: string): ReadonlySet<string> {
    return this.forward.get(source) ?? EMPTY
  }

  sourcesOf(target: string): ReadonlySet<string> {
    return this.backward.get(target) ?? EMPTY
  }

  /** How many distinct targets have at least one source. */
  get targetCount(): number {
    return this.backward.size
  }

  clear(): void {
    this.forward.clear()
    this.backward.clear()
  }

  private link(source: string, target: string): void {
    let sources = this.backward.get(target)
    if (sources === undefined) {
      sources = new Set()
      this.backward.set(target, sources)
    }
    sources.add(source)
  }

  private unlink(source: string, target: string): void {
    const sources = this.backward.get(target)
    if (sources === undefined) return
    sources.delete(source)
    if (sources.size === 0) this.backward.delete(target)
  }
}
