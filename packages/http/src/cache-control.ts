/** The Cache-Control directives of a response that decide whether, and how long, a shared cache keeps it. */
export interface ResponseDirectives {
  /** `no-store`: never kept. */
  readonly noStore: boolean
  /** `private`: for one user's cache only, never a shared one like this. */
  readonly private: boolean
  /** `no-cache`: may only be reused after revalidation with the origin, which this cache cannot do. */
  readonly noCache: boolean
  /** `s-maxage` in seconds: the lifetime a shared cache gives the response (over the route's TTL). */
  readonly sMaxAge: number | undefined
}

const NONE: ResponseDirectives = { noStore: false, private: false, noCache: false, sMaxAge: undefined }

/**
 * Reads the directives of a Cache-Control header value (RFC 9111 §5.2): comma-separated, names are
 * case-insensitive, arguments may be quoted. `private="set-cookie"` and `no-cache="x"` name fields and
 * still count as the whole directive here: dropping fields from a stored response is not supported, so the
 * response is not stored.
 */
export function parseCacheControl(value: string | undefined): ResponseDirectives {
  if (value === undefined || value === '') return NONE
  let noStore = false
  let isPrivate = false
  let noCache = false
  let sMaxAge: number | undefined
  for (const part of value.split(',')) {
    const at = part.indexOf('=')
    const name = (at === -1 ? part : part.slice(0, at)).trim().toLowerCase()
    if (name === 'no-store') noStore = true
    else if (name === 'private') isPrivate = true
    else if (name === 'no-cache') noCache = true
    else if (name === 's-maxage' && at !== -1) {
      const text = part
        .slice(at + 1)
        .trim()
        .replace(/^"(.*)"$/, '$1')
      // An invalid value makes the response stale at once (RFC 9111 §4.2.1): treated as 0, not stored.
      sMaxAge = /^\d+$/.test(text) ? Number(text) : 0
    }
  }
  return { noStore, private: isPrivate, noCache, sMaxAge }
}
