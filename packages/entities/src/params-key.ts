import { InvalidKeyError } from '@layercache/core'

/** The longest encoded params, like an id's length (see MAX_ID_LENGTH). */
export const MAX_PARAMS_LENGTH = 512

/** What a list is keyed by: a flat object of strings, finite numbers and booleans ({} for a global list). */
export type ListParams = Readonly<Record<string, string | number | boolean>>

/**
 * A stable text for `params`: keys sorted, every part URI-encoded, so `{ b: 1, a: 'x' }` and
 * `{ a: 'x', b: 1 }` name the same list and no value can contain the `{`, `}` or `:` that key names use.
 */
export function paramsKey(params: unknown, list: string): string {
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    throw new InvalidKeyError(`${list}: list params must be a plain object ({} for none)`)
  }
  const parts: string[] = []
  for (const name of Object.keys(params).sort()) {
    const value = (params as Record<string, unknown>)[name]
    const ok =
      typeof value === 'string' ||
      typeof value === 'boolean' ||
      (typeof value === 'number' && Number.isFinite(value))
    if (!ok) {
      throw new InvalidKeyError(
        `${list}: list param ${JSON.stringify(name)} must be a string, a finite number or a boolean`,
      )
    }
    // By text, as ids are: { userId: 7 } and { userId: '7' } (a route parameter) name the same list.
    parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(String(value))}`)
  }
  const key = parts.join('&')
  // It becomes part of L1 keys and tags (at most 1024 characters): refused here, before Redis is touched.
  if (key.length > MAX_PARAMS_LENGTH) {
    throw new InvalidKeyError(
      `${list}: list params are ${key.length} characters encoded, at most ${MAX_PARAMS_LENGTH}`,
    )
  }
  return key
}
