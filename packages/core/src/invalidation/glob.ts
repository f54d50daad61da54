import { forbiddenCharIndex, isReservedKey, reservedKeyReason } from '../validation'
import { InvalidPatternError } from './errors'

export const MAX_PATTERN_LENGTH = 1024

const STAR = 0x2a // '*'
const QUESTION = 0x3f // '?'

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value)
  return typeof value
}

/**
 * Throws InvalidPatternError unless callers may invalidate by `pattern`: a usable glob that does not
 * start in the reserved '~' space (no cache key does); returns it for chaining.
 */
export function validatePattern(pattern: unknown): string {
  const checked = checkGlob(pattern)
  if (isReservedKey(checked)) throw new InvalidPatternError(reservedKeyReason('pattern', checked))
  return checked
}

/**
 * Throws InvalidPatternError unless `pattern` is a usable glob. Matching takes any such glob: a pattern
 * another instance logged or announced is compiled as it is, whatever its first character.
 */
function checkGlob(pattern: unknown): string {
  if (typeof pattern !== 'string') {
    throw new InvalidPatternError(`Invalid pattern ${describe(pattern)}: expected a string`)
  }
  if (pattern.length === 0) throw new InvalidPatternError('Invalid pattern "": expected a non-empty string')
  if (pattern.length > MAX_PATTERN_LENGTH) {
    throw new InvalidPatternError(
      `Invalid pattern ${describe(pattern)}: ${pattern.length} characters, ` +
        `at most ${MAX_PATTERN_LENGTH} allowed`,
    )
  }
  const at = forbiddenCharIndex(pattern)
  if (at !== -1) {
    const code = pattern.charCodeAt(at).toString(16).padStart(4, '0')
    throw new InvalidPatternError(
      `Invalid pattern ${describe(pattern)}: U+${code} at index ${at} is not allowed ` +
        '(control character or unpaired surrogate)',
    )
  }
  return pattern
}

function hasWildcard(pattern: string, from: number): boolean {
  for (let i = from; i < pattern.length; i++) {
    const code = pattern.charCodeAt(i)
    if (code === STAR || code === QUESTION) return true
  }
  return false
}

/** The part of `pattern` before its first `*` or `?`: every matching key starts with it. */
export function literalPrefixOf(pattern: string): string {
  for (let i = 0; i < pattern.length; i++) {
    const code = pattern.charCodeAt(i)
    if (code === STAR || code === QUESTION) return pattern.slice(0, i)
  }
  return pattern
}

/**
 * Greedy two-pointer wildcard match. On a mismatch it retries from the last `*`, letting that star
 * swallow one more character; earlier stars never need revisiting, so the worst case is
 * O(pattern × key) with no exponential blow-up (unlike a RegExp built from the pattern).
 */
function wildcardMatch(pattern: string, key: string, from: number): boolean {
  const patternLength = pattern.length
  const keyLength = key.length
  let p = from
  let k = from
  let star = -1
  let resume = 0
  while (k < keyLength) {
    const code = p < patternLength ? pattern.charCodeAt(p) : -1
    if (code === QUESTION || (code !== STAR && code === key.charCodeAt(k))) {
      p++
      k++
    } else if (code === STAR) {
      star = p++
      resume = k
    } else if (star !== -1) {
      p = star + 1
      k = ++resume
    } else {
      return false
    }
  }
  while (p < patternLength && pattern.charCodeAt(p) === STAR) p++
  return p === patternLength
}

/**
 * Compiles a glob where `*` matches any sequence (including the empty one) and `?` exactly one UTF-16
 * code unit; every other character, `[ ] \` included, is literal. Throws InvalidPatternError.
 */
export function compileGlob(pattern: string): (key: string) => boolean {
  checkGlob(pattern)
  const prefix = literalPrefixOf(pattern)
  if (prefix.length === pattern.length) return (key) => key === pattern
  if (prefix.length === pattern.length - 1 && pattern.charCodeAt(prefix.length) === STAR) {
    return (key) => key.startsWith(prefix)
  }
  if (pattern.charCodeAt(0) === STAR && !hasWildcard(pattern, 1)) {
    const suffix = pattern.slice(1)
    return (key) => key.endsWith(suffix)
  }
  const from = prefix.length
  return (key) => key.startsWith(prefix) && wildcardMatch(pattern, key, from)
}

/**
 * The Redis `MATCH` pattern with the same meaning as `compileGlob(pattern)`: Redis' own specials
 * `[`, `]` and `\` are escaped, `*` and `?` kept. Caveat: Redis compares bytes, so its `?` is one
 * byte of UTF-8 while ours is one UTF-16 code unit. The two agree exactly on keys made of ASCII
 * characters; on others a `?` can disagree either way (`a??` matches the 3-byte `aé` in Redis only),
 * so where keys may be non-ASCII, narrow by `literalPrefixOf` instead and filter with `compileGlob`.
 */
export function globToRedisMatch(pattern: string): string {
  checkGlob(pattern)
  let out = ''
  let from = 0
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern.charAt(i)
    if (char === '[' || char === ']' || char === '\\') {
      out += pattern.slice(from, i) + '\\' + char
      from = i + 1
    }
  }
  return out + pattern.slice(from)
}
