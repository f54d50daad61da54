import { assertKeyText } from '@layercache/core'

/** '' stays ''; anything else gets a trailing ':' when it has none ("app" and "app:" mean the same). */
export function normalizePrefix(prefix: unknown): string {
  if (prefix === undefined || prefix === '') return ''
  const checked = assertKeyText(prefix, 'Redis key prefix')
  return checked.endsWith(':') ? checked : `${checked}:`
}

/** Redis MATCH treats *, ?, [, ] and \ as syntax: escape them so a prefix only ever matches itself. */
export function escapeGlob(literal: string): string {
  return literal.replace(/[*?[\]\\]/g, (char) => `\\${char}`)
}

/** SCAN MATCH pattern for every key under `prefix`. */
export function scanPattern(prefix: string): string {
  return `${escapeGlob(prefix)}*`
}
