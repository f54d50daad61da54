import { assertOneOf } from '../validation'
import { type BoundOptions, readBoundOptions } from './bound-options'
import { BoundedRelation } from './bounded-relation'

export type TagMatchMode = 'any' | 'all'

export type MemoryTagIndexOptions = BoundOptions

const MODES: readonly TagMatchMode[] = ['any', 'all']

/**
 * In-process index of which keys carry which tags. Bounded to `maxKeys` tagged keys: beyond that the
 * oldest-tracked key loses its memberships and `onEvict(key)` asks the owner to drop it from its
 * cache, because an untracked key would survive the tag invalidation that should have removed it.
 */
export class MemoryTagIndex {
  private readonly relation: BoundedRelation

  constructor(options?: MemoryTagIndexOptions) {
    this.relation = new BoundedRelation(readBoundOptions(options, 'MemoryTagIndex'))
  }

  /** Number of tracked (tagged) keys. */
  get size(): number {
    return this.relation.size
  }

  /** Number of tags with at least one key. */
  get tagCount(): number {
    return this.relation.targetCount
  }

  /** Replaces the tags of `key` (no tags: the key is forgotten). Duplicate tags count once. */
  set(key: string, tags: readonly string[]): void {
    this.relation.set(key, tags)
  }

  delete(key: string): boolean {
    return this.relation.delete(key)
  }

  has(key: string): boolean {
    return this.relation.has(key)
  }

  tagsOf(key: string): string[] {
    return [...this.relation.targetsOf(key)]
  }

  keysForTag(tag: string): string[] {
    return [...this.relation.sourcesOf(tag)]
  }

  /**
   * Keys carrying any / all of `tags`. No tags matches no key in either mode: an empty `'all'` must
   * not turn into "invalidate everything".
   */
  keysForTags(tags: readonly string[], mode: TagMatchMode = 'any'): string[] {
    assertOneOf(mode, MODES, 'tag match mode')
    if (tags.length === 0) return []
    if (mode === 'any') {
      const keys = new Set<string>()
      for (const tag of tags) for (const key of this.relation.sourcesOf(tag)) keys.add(key)
      return [...keys]
    }
    const sets = [...new Set(tags)].map((tag) => this.relation.sourcesOf(tag))
    sets.sort((a, b) => a.size - b.size)
    const [smallest, ...others] = sets as [ReadonlySet<string>, ...ReadonlySet<string>[]]
    const keys: string[] = []
    for (const key of smallest) if (others.every((set) => set.has(key))) keys.push(key)
    return keys
  }

  clear(): void {
    this.relation.clear()
  }
}
