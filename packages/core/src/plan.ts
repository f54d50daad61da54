import type { FreshnessPolicy } from './freshness'
import type { LayerErrorMode } from './write-gate'

/** Tags as stored: with the namespace in front, so a tag never reaches into another tenant. */
export function scopeTags(
  tags: readonly string[] | undefined,
  prefix: string,
): readonly string[] | undefined {
  if (tags === undefined || prefix === '') return tags
  return tags.map((tag) => prefix + tag)
}

/** A getOrSet call's resolved options. */
export interface LoadPlan {
  readonly ttl: number | undefined
  /** As the caller gave them; stored with `tagPrefix` (the namespace) in front. */
  readonly tags: readonly string[] | undefined
  /** Stored as they are (already scoped): one tag per `dependsOn` key. */
  readonly dependencyTags?: readonly string[] | undefined
  readonly tagPrefix: string
  readonly mode: LayerErrorMode
  readonly policy: FreshnessPolicy
}
