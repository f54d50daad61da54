import { compileGlob, literalPrefixOf } from './glob'

/**
 * Which keys a prefix or pattern invalidation covers, as data (a layer may record it, e.g. in Redis, for
 * writers to check later): keys starting with the literal `scope` (namespace and prefix) whose remainder
 * matches `pattern`, when there is one. Keeping the scope out of the glob means a namespace whose name
 * holds `*` or `?` is still matched literally, so a pattern can never reach another tenant.
 */
export interface KeyMatch {
  readonly scope: string
  /** A validated glob for the part of the key after `scope`; absent: every key in the scope. */
  readonly pattern?: string | undefined
}

/** The longest literal prefix every matching key shares: what an ordered index narrows by. */
export function indexPrefixOf(match: KeyMatch): string {
  return match.pattern === undefined ? match.scope : match.scope + literalPrefixOf(match.pattern)
}

/** A predicate for full keys (compiled once per invalidation). */
export function keyMatcher(match: KeyMatch): (key: string) => boolean {
  const { scope, pattern } = match
  if (pattern === undefined) return (key) => key.startsWith(scope)
  const rest = compileGlob(pattern)
  const length = scope.length
  return (key) => key.startsWith(scope) && rest(key.slice(length))
}
