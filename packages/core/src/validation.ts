import { InvalidKeyError, InvalidOptionError, InvalidTtlError, InvalidValueError } from './errors'

export const MAX_KEY_LENGTH = 1024
export const MAX_TAG_LENGTH = 1024
export const MAX_TAGS_PER_ENTRY = 256
/** Ten years: longer TTLs are almost always a unit mistake (seconds passed as milliseconds twice over). */
export const MAX_TTL_MS = 10 * 365 * 24 * 60 * 60 * 1000

/**
 * Index of the first character refused in keys, tags and patterns, or -1. C0 controls and DEL break log
 * lines, Redis MATCH patterns and protocol dumps; unpaired surrogates have no UTF-8 form. A char-code
 * scan is cheaper than a regex on strings as short as keys.
 */
export function forbiddenCharIndex(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x20 || code === 0x7f) return i
    // A lone surrogate has no UTF-8 form: Redis would store U+FFFD, so two keys would collide.
    if (code >= 0xd800 && code <= 0xdfff) {
      const next = text.charCodeAt(i + 1)
      if (code > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) return i
      i++
    }
  }
  return -1
}

function hasControlChar(text: string): boolean {
  return forbiddenCharIndex(text) !== -1
}

/**
 * Keys starting with '~' are where a RedisLayer keeps its own structures (`P~{…}k` key-index shards,
 * `P~t:` tag sets, `P~te:` tag epochs, `P~v:` counters, `P~gen`, the invalidation log): no cache key,
 * namespace, prefix or pattern may start with it, so no public call can read, delete or match them.
 */
const RESERVED_CHAR = 0x7e // '~'

/** Whether `key` lies in the reserved space: one char-code test, cheap enough for the hot path. */
export function isReservedKey(key: string): boolean {
  return key.charCodeAt(0) === RESERVED_CHAR
}

/** The sentence every refusal of the reserved space carries (keys, prefixes and patterns alike). */
export function reservedKeyReason(what: string, text: string): string {
  return (
    `Invalid ${what} ${describe(text)}: keys, namespaces, prefixes and patterns starting with "~" are ` +
    "reserved (the layer's own indexes, tag sets and counters live there)"
  )
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value)
  return typeof value
}

/**
 * Throws InvalidKeyError unless `text` may be part of a Redis key: a non-empty string of at most
 * MAX_KEY_LENGTH characters without control characters or unpaired surrogates. For ids and prefixes that
 * other code places inside a key of its own; cache keys take assertKey.
 */
export function assertKeyText(text: unknown, what: string): string {
  if (typeof text !== 'string' || text.length === 0 || text.length > MAX_KEY_LENGTH || hasControlChar(text)) {
    throw new InvalidKeyError(
      `Invalid ${what} ${describe(text)}: expected a non-empty string of at most ${MAX_KEY_LENGTH} ` +
        'characters without control characters or unpaired surrogates',
    )
  }
  return text
}

/**
 * Throws InvalidKeyError unless `key` is a usable cache key (assertKeyText, and outside the reserved '~'
 * space); returns it for chaining on the hot path. Namespaces, wrap prefixes and dependencies are keys too.
 */
export function assertKey(key: unknown, what = 'key'): string {
  assertKeyText(key, what)
  if (isReservedKey(key as string)) throw new InvalidKeyError(reservedKeyReason(what, key as string))
  return key as string
}

/** A key prefix for prefix invalidation: like a key, but may be empty (everything in the namespace). */
export function assertKeyPrefix(prefix: unknown): string {
  if (prefix === '') return ''
  return assertKey(prefix, 'prefix')
}

/** TTLs are whole milliseconds in (0, MAX_TTL_MS]; `undefined` means "use the default". */
export function assertTtl(ttl: unknown, what = 'ttl'): number | undefined {
  if (ttl === undefined) return undefined
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl <= 0 || ttl > MAX_TTL_MS) {
    throw new InvalidTtlError(
      `Invalid ${what} ${String(ttl)}: expected a whole number of milliseconds between 1 and ${MAX_TTL_MS}`,
    )
  }
  return ttl
}

/**
 * Checks a tag list. `max` bounds what one entry carries (MAX_TAGS_PER_ENTRY); an invalidation may name
 * any number of tags (Infinity).
 */
export function assertTags(tags: unknown, max = MAX_TAGS_PER_ENTRY): readonly string[] | undefined {
  if (tags === undefined) return undefined
  if (!Array.isArray(tags))
    throw new InvalidOptionError(`Invalid tags ${describe(tags)}: expected an array of strings`)
  if (tags.length > max) {
    throw new InvalidOptionError(`Too many tags (${tags.length}): at most ${MAX_TAGS_PER_ENTRY} per entry`)
  }
  for (const tag of tags) {
    if (typeof tag !== 'string' || tag.length === 0 || tag.length > MAX_TAG_LENGTH || hasControlChar(tag)) {
      throw new InvalidOptionError(
        `Invalid tag ${describe(tag)}: expected a non-empty string of at most ${MAX_TAG_LENGTH} ` +
          'characters without control characters',
      )
    }
  }
  return tags.length === 0 ? undefined : tags
}

export function assertCacheableValue(value: unknown, key: string): void {
  if (value === undefined) {
    throw new InvalidValueError(
      `Cannot cache undefined for key ${describe(key)}: undefined means "absent"; use null`,
    )
  }
}

/** Rejects option objects with keys we do not know, so a typo (`ttl_ms`) fails loudly instead of being ignored. */
export function assertKnownOptions(options: unknown, allowed: readonly string[], where: string): void {
  if (options === undefined) return
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidOptionError(`${where}: options must be an object, got ${describe(options)}`)
  }
  for (const name of Object.keys(options)) {
    if (!allowed.includes(name)) {
      throw new InvalidOptionError(`${where}: unknown option "${name}" (known: ${allowed.join(', ')})`)
    }
  }
}

export function assertOneOf<T extends string>(
  value: unknown,
  allowed: readonly T[],
  what: string,
): T | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new InvalidOptionError(`Invalid ${what} ${describe(value)}: expected one of ${allowed.join(', ')}`)
  }
  return value as T
}

export function assertPositiveInteger(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new InvalidOptionError(`Invalid ${what} ${String(value)}: expected a positive whole number`)
  }
  return value
}
