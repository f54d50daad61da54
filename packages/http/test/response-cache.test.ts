import { CacheStack, InvalidKeyError, InvalidOptionError, InvalidTtlError } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { describe, expect, it } from 'vitest'
import {
  type CacheRequest,
  type CapturedResponse,
  matchesIfNoneMatch,
  parseCacheControl,
  ResponseCache,
  type ResponseCacheOptions,
  routeSettingsOf,
  varyNames,
} from '../src/index'

const stack = () => new CacheStack([new MemoryLayer({ ttl: 60_000 })])

function request(url: string, headers: Record<string, string> = {}, method = 'GET'): CacheRequest {
  return { method, host: 'shop.example', url, header: (name) => headers[name] }
}

const page = (body: string, headers: CapturedResponse['headers'] = {}): CapturedResponse => ({
  status: 200,
  headers,
  body,
})

describe('ResponseCache options', () => {
  const cache = stack()
  const bad: [string, Partial<ResponseCacheOptions>, new (...args: never[]) => Error][] = [
    ['no cache', { cache: undefined }, InvalidOptionError],
    ['a cache that is not a stack', { cache: {} as never }, InvalidOptionError],
    ['no ttl', { ttl: undefined as never }, InvalidOptionError],
    ['a negative ttl', { ttl: -1 }, InvalidTtlError],
    ['a fractional window', { staleWhileRevalidate: 0.5 }, InvalidTtlError],
    ['an empty prefix', { prefix: '' }, InvalidKeyError],
    ['a prefix in the reserved space', { prefix: '~http:' }, InvalidKeyError],
    ['status 304', { statuses: [304] }, InvalidOptionError],
    ['no statuses', { statuses: [] }, InvalidOptionError],
    ['a zero body limit', { maxBodyBytes: 0 }, InvalidOptionError],
    ['a bypass that is not a function', { bypass: true as never }, InvalidOptionError],
    ['a status header that is not a header name', { statusHeader: 'x cache' }, InvalidOptionError],
    ['an unknown option', { colour: 'red' } as never, InvalidOptionError],
  ]
  for (const [what, options, error] of bad) {
    it(`refuses ${what}`, () => {
      expect(() => new ResponseCache({ cache, ttl: 1000, ...options } as ResponseCacheOptions)).toThrow(error)
    })
  }

  it('refuses bad route options when the route is declared', () => {
    expect(() => routeSettingsOf({ ttl: 0 }, 'route')).toThrow(InvalidTtlError)
    expect(() => routeSettingsOf({ tags: [1] as never }, 'route')).toThrow(InvalidOptionError)
    expect(() => routeSettingsOf({ cache: true } as never, 'route')).toThrow(InvalidOptionError)
    expect(routeSettingsOf({ ttl: 5, tags: ['a'] }, 'route')(undefined)).toEqual({ ttl: 5, tags: ['a'] })
  })
})

describe('ResponseCache.serve', () => {
  it('stores under a readable key, hashes a long one, and finds both again', async () => {
    const cache = stack()
    const responses = new ResponseCache({ cache, ttl: 60_000 })
    const long = `/search?q=${'x'.repeat(2000)}`
    for (const url of ['/a?b=1', long]) {
      let runs = 0
      const run = async () => {
        runs++
        return page(`page ${url.length}`)
      }
      expect((await responses.serve(request(url), {}, run)).kind).toBe('send')
      const again = await responses.serve(request(url), {}, run)
      expect(again.kind === 'send' && again.cache).toBe('HIT')
      expect(runs).toBe(1)
    }
    expect(responses.keyOf({ host: 'shop.example', url: '/a?b=1' })).toBe('http:GET:shop.example/a?b=1')
    expect(await cache.has('http:GET:shop.example/a?b=1')).toBe(true)
    expect(responses.keyOf({ host: 'shop.example', url: long })).toMatch(/^http:GET#[\w-]{43}$/)
  })

  it('tells the adapter to let the handler answer when the cache fails, and reports the failure', async () => {
    const errors: unknown[] = []
    const failing = { ...stack(), getOrSet: () => Promise.reject(new Error('redis is down')) }
    const cache = Object.assign(stack(), { getOrSet: failing.getOrSet })
    const responses = new ResponseCache({ cache, ttl: 1000, onError: (error) => errors.push(error) })
    expect(await responses.serve(request('/x'), {}, async () => page('x'))).toEqual({
      kind: 'proceed',
      cache: 'PASS',
    })
    expect(errors).toHaveLength(1)
  })

  it('uses s-maxage as the fresh lifetime and keeps the handler ETag', async () => {
    const cache = stack()
    const responses = new ResponseCache({ cache, ttl: 60_000 })
    await responses.serve(request('/s'), {}, async () =>
      page('s', { 'cache-control': 's-maxage=2', etag: 'W/"mine"' }),
    )
    const stored = (await cache.get('http:GET:shop.example/s')) as { fresh: number; etag: string }
    expect([stored.fresh, stored.etag]).toEqual([2000, 'W/"mine"'])
  })

  it('never runs the handler for a request already answered, whatever a stack-wide background refresh does', async () => {
    // refreshAhead: a hit past 0.01 % of the TTL (6 ms) starts a background refresh with that request's
    // loader. The TTL is long so that a loaded machine cannot let the page expire before the second request
    // (that request would then be a plain miss, and no refresh would come).
    const cache = new CacheStack([new MemoryLayer({ ttl: 60_000 })], { refreshAhead: 0.0001 })
    const responses = new ResponseCache({ cache, ttl: 60_000 })
    let runs = 0
    const run = async () => page(`v${++runs}`)
    await responses.serve(request('/r'), {}, run)
    const storedAt = Date.now()
    while (Date.now() - storedAt < 10) await new Promise((resolve) => setImmediate(resolve)) // the clock, not work
    const refreshed = new Promise((resolve) => cache.on('refresh', resolve))
    const loaded = new Promise((resolve) => cache.on('load', resolve))
    const hit = await responses.serve(request('/r'), {}, run)
    await refreshed
    await loaded
    // Either this request ran the handler as the refresh's runner (and was answered with it), or the
    // refresh found no request to run; never a handler run nobody receives.
    if (hit.kind === 'send' && hit.cache === 'MISS') expect([hit.body, runs]).toEqual(['v2', 2])
    else expect([hit.kind === 'send' && hit.body, runs]).toEqual(['v1', 1])
  })
})

describe('header parsing', () => {
  it('reads the Cache-Control directives a shared cache acts on', () => {
    expect(parseCacheControl('public, S-MaxAge="30", max-age=5')).toEqual({
      noStore: false,
      private: false,
      noCache: false,
      sMaxAge: 30,
    })
    expect(parseCacheControl('private="set-cookie", no-cache, no-store')).toMatchObject({
      noStore: true,
      private: true,
      noCache: true,
    })
    expect(parseCacheControl('s-maxage=soon').sMaxAge).toBe(0)
  })

  it('normalises Vary names and recognises Vary: *', () => {
    expect(varyNames('Accept-Language, accept ,ACCEPT')).toEqual(['accept', 'accept-language'])
    expect(varyNames('accept, *')).toEqual(['*'])
    expect(varyNames(undefined)).toEqual([])
  })

  it('matches If-None-Match by the weak comparison', () => {
    expect(matchesIfNoneMatch('"a", W/"b"', '"b"')).toBe(true)
    expect(matchesIfNoneMatch('"b"', 'W/"b"')).toBe(true)
    expect(matchesIfNoneMatch('*', '"z"')).toBe(true)
    expect(matchesIfNoneMatch('"a"', '"b"')).toBe(false)
    expect(matchesIfNoneMatch(undefined, '"b"')).toBe(false)
  })
})
