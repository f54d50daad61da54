import { createHash } from 'node:crypto'
import type { CacheRequest } from './types'

/**
 * Keys longer than this (or holding characters a cache key may not hold) are hashed: the stack refuses
 * keys over 1 024 characters, and the prefix and a variant suffix need room.
 */
const MAX_PLAIN_KEY = 900
// A URL as a server receives it has no control characters, but a Host header or a custom key might.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/

const digest = (text: string) => createHash('sha256').update(text).digest('base64url')

/**
 * The key of a URL's entry: `<prefix>GET:<host><path?query>` (HEAD reads the GET entry). Readable, so
 * `invalidateByPrefix('http:GET:shop.example/products')` purges a section; a long or odd one is hashed.
 */
export function baseKey(prefix: string, request: CacheRequest): string {
  const target = `${request.host ?? ''}${request.url}`
  if (target.length <= MAX_PLAIN_KEY && !CONTROL.test(target)) return `${prefix}GET:${target}`
  return `${prefix}GET#${digest(target)}`
}

/**
 * Header names of a Vary value, lower-cased, de-duplicated and sorted, so `Vary: Accept-Language, accept`
 * and `Vary: Accept,Accept-Language` name the same variants. `['*']` for `Vary: *`.
 */
export function varyNames(value: string | undefined): readonly string[] {
  if (value === undefined) return []
  const names = new Set<string>()
  for (const part of value.split(',')) {
    const name = part.trim().toLowerCase()
    if (name === '*') return ['*']
    if (name !== '') names.add(name)
  }
  return [...names].sort()
}

/** The request's values of the headers `names` (missing ones as ''), in the order of `names`. */
export function varyValues(names: readonly string[], request: CacheRequest): string[] {
  return names.map((name) => request.header(name)?.trim() ?? '')
}

export function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** The key of one variant of a URL: the URL's key and a digest of the request's values of the Vary headers. */
export function variantKey(base: string, names: readonly string[], values: readonly string[]): string {
  return `${base}|vary:${digest(JSON.stringify([names, values]))}`
}
