/**
 * Invariant 9: bad input gets a clear, typed error (one base class, a stable `code`) and a rejected call
 * changes nothing: no layer is touched, previous values survive.
 */
import {
  CacheStack,
  InvalidKeyError,
  InvalidOptionError,
  InvalidPatternError,
  InvalidTtlError,
  InvalidValueError,
  LayerCacheError,
  MAX_KEY_LENGTH,
  MAX_TTL_MS,
  SerializationError,
} from '@layercache/core'
import { describe, expect, it, vi } from 'vitest'
import { MemoryLayer, RemoteLayer } from './support/remote-layer'

type ErrorClass = new (...args: never[]) => LayerCacheError

function fixture(protection: 'freeze' | 'clone' | 'none' = 'freeze', serialize = true) {
  const l1 = new MemoryLayer({ protection })
  const remote = new RemoteLayer({ serialize })
  const cache = new CacheStack([l1, remote])
  return { l1, remote, cache }
}

type Fixture = ReturnType<typeof fixture>

function snapshot({ l1, remote }: Fixture) {
  const l1Keys = [...l1.keys()].sort()
  const remoteKeys = remote.keys().sort()
  return {
    l1: l1Keys.map((key) => [key, l1.get(key)?.value]),
    remote: remoteKeys.map((key) => [key, remote.peek(key)]),
    remoteCalls: remote.totalCalls,
  }
}

/** Runs `call`, expects it to fail with `type`/`code` (thrown or rejected), and nothing to have changed. */
async function expectRefused(f: Fixture, call: () => unknown, type: ErrorClass, code: string) {
  const before = snapshot(f)
  let error: unknown
  try {
    await call()
  } catch (e) {
    error = e
  }
  expect(error, 'expected the call to fail').toBeInstanceOf(type)
  expect(error).toBeInstanceOf(LayerCacheError)
  expect((error as LayerCacheError).code).toBe(code)
  expect((error as Error).message.length).toBeGreaterThan(10)
  expect(snapshot(f)).toEqual(before)
}

async function seeded(protection: 'freeze' | 'clone' | 'none' = 'freeze', serialize = true) {
  const f = fixture(protection, serialize)
  await f.cache.set('keep', { v: 1 })
  await f.cache.set('other', 'o')
  return f
}

const BAD_KEYS: unknown[] = [
  '',
  1,
  null,
  undefined,
  {},
  ['k'],
  'x'.repeat(MAX_KEY_LENGTH + 1),
  'line\nbreak',
  'tab\there',
  'nul\u0000',
  'esc\u001b[0m',
  'del\u007f',
  'cr\r',
  // The RedisLayer's own key space (indexes, tag sets, counters), reserved on every layer.
  '~',
  '~{p::0}k',
]

function label(value: unknown): string {
  if (typeof value === 'string' && value.length > 20) return `a ${value.length}-character string`
  return JSON.stringify(value) ?? String(value)
}

describe('invalid keys', () => {
  it.each(BAD_KEYS.map((key) => [label(key), key]))(
    'refuses key %s in every operation',
    async (_label, key) => {
      const f = await seeded()
      const k = key as string
      const refuse = (call: () => unknown) => expectRefused(f, call, InvalidKeyError, 'INVALID_KEY')
      await refuse(() => f.cache.get(k))
      await refuse(() => f.cache.has(k))
      await refuse(() => f.cache.set(k, 1))
      await refuse(() => f.cache.delete(k))
      await refuse(() => f.cache.getOrSet(k, () => 1))
      await refuse(() => f.cache.mget(['keep', k]))
      await refuse(() =>
        f.cache.mset([
          { key: 'fresh', value: 1 },
          { key: k, value: 2 },
        ]),
      )
      // A bad key anywhere in the list: the good keys are not deleted either.
      await refuse(() => f.cache.mdelete(['keep', 'other', k]))
      await refuse(() => f.cache.namespace(k))
      expect(f.l1.get('keep')?.value).toEqual({ v: 1 })
    },
  )

  it('refuses the reserved "~" space as a wrap prefix, a dependency, a prefix and a pattern', async () => {
    const f = await seeded()
    const refuse = (call: () => unknown) => expectRefused(f, call, InvalidKeyError, 'INVALID_KEY')
    await refuse(() => f.cache.wrap('~t', () => 1))
    await refuse(() => f.cache.set('fresh', 1, { dependsOn: ['~t:x'] }))
    await refuse(() => f.cache.getOrSet('fresh', () => 1, { dependsOn: ['~t:x'] }))
    await refuse(() => f.cache.invalidateByPrefix('~'))
    await refuse(() => f.cache.invalidate({ keys: ['keep', '~gen'] }))
    await refuse(() => f.cache.namespace('ok').get('~gen'))
    for (const pattern of ['~*', '~gen']) {
      await expectRefused(
        f,
        () => f.cache.invalidateByPattern(pattern),
        InvalidPatternError,
        'INVALID_PATTERN',
      )
    }
  })

  it(`accepts keys of exactly ${MAX_KEY_LENGTH} characters, with ':' and non-ASCII text`, async () => {
    const { l1, remote, cache } = fixture()
    const long = 'k'.repeat(MAX_KEY_LENGTH)
    for (const key of [long, 'a:b:c', 'ключ:🙂', ' spaced key ', 'a~b']) {
      await cache.set(key, key.length)
      expect(l1.get(key)?.value).toBe(key.length)
      expect(remote.peek(key)).toBe(key.length)
      expect(await cache.get(key)).toBe(key.length)
    }
  })
})

const BAD_TTLS: unknown[] = [0, -1, -0.5, 1.5, Number.NaN, Infinity, -Infinity, MAX_TTL_MS + 1, '100', null]

describe('invalid TTLs', () => {
  it.each(BAD_TTLS.map((ttl) => [String(ttl), ttl]))('refuses ttl %s', async (_label, ttl) => {
    const f = await seeded()
    const options = { ttl: ttl as number }
    const refuse = (call: () => unknown) => expectRefused(f, call, InvalidTtlError, 'INVALID_TTL')
    await refuse(() => f.cache.set('keep', { v: 2 }, options))
    await refuse(() => f.cache.set('fresh', 1, options))
    // Validated even when the key is already cached (no silent acceptance on the hit path).
    await refuse(() => f.cache.getOrSet('keep', () => 1, options))
    await refuse(() => f.cache.getOrSet('fresh', () => 1, options))
    await refuse(() =>
      f.cache.mset([
        { key: 'fresh', value: 1 },
        { key: 'keep', value: 2, ...options },
      ]),
    )
    await refuse(() => f.cache.wrap('w', () => 1, options))
    await refuse(() => new CacheStack([new MemoryLayer()], options))
    await refuse(() => new MemoryLayer(options))
  })

  it('accepts 1 ms and MAX_TTL_MS, and an explicit undefined ttl', async () => {
    const { remote, cache } = fixture()
    const now = Date.now()
    await cache.set('short', 1, { ttl: 1 })
    await cache.set('max', 2, { ttl: MAX_TTL_MS })
    await cache.set('none', 3, { ttl: undefined, tags: undefined })
    expect(remote.expiresAt('max')).toBeGreaterThanOrEqual(now + MAX_TTL_MS)
    expect(remote.expiresAt('none')).toBe(0)
    expect(new CacheStack([new MemoryLayer({ ttl: MAX_TTL_MS })], { ttl: MAX_TTL_MS })).toBeInstanceOf(
      CacheStack,
    )
  })
})

const BAD_TAGS: [string, unknown][] = [
  ['a string', 'tag'],
  ['an object', { tag: true }],
  ['an empty tag', ['ok', '']],
  ['a control character', ['a\nb']],
  ['a number', [1]],
  ['null', [null]],
  ['an overlong tag', ['t'.repeat(1025)]],
  ['257 tags', Array.from({ length: 257 }, (_, i) => `t${i}`)],
]

describe('invalid tags', () => {
  it.each(BAD_TAGS)('refuses %s', async (_label, tags) => {
    const f = await seeded()
    const options = { tags: tags as string[] }
    const refuse = (call: () => unknown) => expectRefused(f, call, InvalidOptionError, 'INVALID_OPTION')
    await refuse(() => f.cache.set('keep', { v: 2 }, options))
    await refuse(() => f.cache.getOrSet('fresh', () => 1, options))
    await refuse(() =>
      f.cache.mset([
        { key: 'fresh', value: 1 },
        { key: 'keep', value: 2, ...options },
      ]),
    )
    await refuse(() => f.cache.wrap('w', () => 1, options))
  })

  it('accepts 256 tags and an empty tag list', async () => {
    const { l1, cache } = fixture()
    const tags = Array.from({ length: 256 }, (_, i) => `t${i}`)
    await cache.set('many', 1, { tags })
    await cache.set('none', 2, { tags: [] })
    expect(l1.get('many')?.tags).toEqual(tags)
    expect(await cache.get('none')).toBe(2)
  })
})

describe('invalid options', () => {
  it('refuses unknown option names everywhere', async () => {
    const f = await seeded()
    const refuse = (call: () => unknown) => expectRefused(f, call, InvalidOptionError, 'INVALID_OPTION')
    const typo = { ttl_ms: 5 } as never
    await refuse(() => f.cache.set('keep', { v: 2 }, typo))
    await refuse(() => f.cache.set('keep', { v: 2 }, { ttl: 5, tag: ['x'] } as never))
    await refuse(() => f.cache.get('keep', typo))
    await refuse(() => f.cache.get('missing', typo))
    await refuse(() => f.cache.has('keep', typo))
    await refuse(() => f.cache.mget(['keep'], typo))
    await refuse(() => f.cache.getOrSet('keep', () => 1, typo))
    await refuse(() => f.cache.mset([{ key: 'keep', value: 2, ttlMs: 5 } as never]))
    await refuse(() => f.cache.wrap('w', () => 1, typo))
    await refuse(() => new CacheStack([new MemoryLayer()], { ttl: 5, retries: 3 } as never))
  })

  it('refuses option values that are not objects', async () => {
    const f = await seeded()
    const refuse = (call: () => unknown) => expectRefused(f, call, InvalidOptionError, 'INVALID_OPTION')
    for (const options of ['fast', 5, [], null] as never[]) {
      await refuse(() => f.cache.set('keep', { v: 2 }, options))
      await refuse(() => f.cache.getOrSet('keep', () => 1, options))
      await refuse(() => f.cache.mget(['keep'], options))
      await refuse(() => new CacheStack([new MemoryLayer()], options))
    }
  })

  it('refuses an unknown onLayerError mode', async () => {
    const f = await seeded()
    const refuse = (call: () => unknown) => expectRefused(f, call, InvalidOptionError, 'INVALID_OPTION')
    const bad = { onLayerError: 'ignore' } as never
    await refuse(() => new CacheStack([new MemoryLayer()], bad))
    await refuse(() => f.cache.get('missing', bad))
    await refuse(() => f.cache.has('keep', bad))
    await refuse(() => f.cache.mget(['keep'], bad))
    await refuse(() => f.cache.getOrSet('keep', () => 1, bad))
  })

  it('refuses an unknown onLayerError mode on get even when the key is an L1 hit', async () => {
    const f = await seeded()
    await expectRefused(
      f,
      () => f.cache.get('keep', { onLayerError: 'ignore' } as never),
      InvalidOptionError,
      'INVALID_OPTION',
    )
  })

  it('refuses a loader that is not a function, even for a cached key', async () => {
    const f = await seeded()
    const refuse = (call: () => unknown) => expectRefused(f, call, InvalidOptionError, 'INVALID_OPTION')
    for (const loader of ['value', 42, null, undefined, { call: 1 }] as never[]) {
      await refuse(() => f.cache.getOrSet('keep', loader))
      await refuse(() => f.cache.getOrSet('fresh', loader))
    }
    expect(f.l1.has('fresh')).toBe(false)
  })

  it('refuses non-array arguments to mget, mset and mdelete', async () => {
    const f = await seeded()
    const refuse = (call: () => unknown) => expectRefused(f, call, InvalidOptionError, 'INVALID_OPTION')
    await refuse(() => f.cache.mget('keep' as never))
    await refuse(() => f.cache.mset({ key: 'keep', value: 2 } as never))
    await refuse(() => f.cache.mdelete('keep' as never))
  })
})

describe('invalid values', () => {
  it('refuses undefined (it means "absent"; null is the value for "nothing")', async () => {
    const f = await seeded()
    const refuse = (call: () => unknown) => expectRefused(f, call, InvalidValueError, 'INVALID_VALUE')
    await refuse(() => f.cache.set('keep', undefined))
    await refuse(() =>
      f.cache.mset([
        { key: 'fresh', value: 1 },
        { key: 'keep', value: undefined },
      ]),
    )
    await refuse(() => f.cache.mset([{ key: 'fresh' } as never]))
  })

  for (const protection of ['freeze', 'clone'] as const) {
    it(`MemoryLayer '${protection}' refuses a value structuredClone cannot copy and nothing changes`, async () => {
      // The remote layer would store anything: only the two-phase write keeps it untouched.
      const f = await seeded(protection, false)
      const refuse = (call: () => unknown) => expectRefused(f, call, InvalidValueError, 'INVALID_VALUE')
      for (const value of [{ fn: () => 1 }, { nested: [{ s: Symbol('x') }] }, { w: new WeakMap() }]) {
        await refuse(() => f.cache.set('keep', value))
        await refuse(() => f.cache.set('fresh', value))
        await refuse(() =>
          f.cache.mset<unknown>([
            { key: 'fresh', value: 1 },
            { key: 'other', value },
          ]),
        )
      }
      expect(f.remote.calls.write).toBe(2)
    })
  }

  it('a loader result that cannot be cached rejects every waiter and caches nothing', async () => {
    const f = await seeded('freeze', false)
    const loader = vi.fn(async () => ({ fn: () => 1 }))
    const settled = await Promise.allSettled([1, 2, 3].map(() => f.cache.getOrSet('fresh', loader)))
    expect(loader).toHaveBeenCalledTimes(1)
    for (const result of settled) {
      expect(result.status).toBe('rejected')
      expect((result as PromiseRejectedResult).reason).toBeInstanceOf(InvalidValueError)
    }
    expect(f.l1.has('fresh')).toBe(false)
    expect(f.remote.hasKey('fresh')).toBe(false)
    expect(f.remote.calls.write).toBe(2)
  })

  it('a value refused by a lower layer is not written to L1 either', async () => {
    // L1 would take anything ('none'); the remote refuses while preparing.
    const f = await seeded('none', true)
    const before = snapshot(f)
    for (const value of [{ fn: () => 1 }, () => 1]) {
      await expect(f.cache.set('keep', value)).rejects.toBeInstanceOf(SerializationError)
      await expect(f.cache.set('fresh', value)).rejects.toMatchObject({ code: 'SERIALIZATION' })
    }
    expect(snapshot(f)).toEqual(before)
  })

  it('a write refused while preparing is not counted as a set and emits no set event', async () => {
    const f = await seeded('freeze', false)
    const sets: unknown[] = []
    f.cache.on('set', (e) => sets.push(e))
    const before = f.cache.getStats().sets
    await expect(f.cache.set('keep', { fn: () => 1 })).rejects.toBeInstanceOf(InvalidValueError)
    await expect(f.cache.mset([{ key: 'a', value: { fn: () => 1 } }])).rejects.toBeInstanceOf(
      InvalidValueError,
    )
    expect(sets).toEqual([])
    expect(f.cache.getStats().sets).toBe(before)
  })
})

describe('mset is all or nothing', () => {
  const badEntries: [string, unknown][] = [
    ['a bad key', { key: '', value: 1 }],
    ['a bad ttl', { key: 'c', value: 1, ttl: 0 }],
    ['an undefined value', { key: 'c', value: undefined }],
    ['bad tags', { key: 'c', value: 1, tags: [''] }],
    ['an unknown field', { key: 'c', value: 1, extra: true }],
    ['a null entry', null],
    ['a string entry', 'c'],
  ]
  it.each(badEntries)('writes none of the entries when one has %s', async (_label, bad) => {
    const f = await seeded()
    const entries = [{ key: 'a', value: 1 }, { key: 'keep', value: { v: 99 } }, bad, { key: 'b', value: 2 }]
    let error: unknown
    try {
      await f.cache.mset(entries as never)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(LayerCacheError)
    for (const key of ['a', 'b', 'c']) {
      expect(f.l1.has(key)).toBe(false)
      expect(f.remote.hasKey(key)).toBe(false)
    }
    expect(f.l1.get('keep')?.value).toEqual({ v: 1 })
    expect(f.remote.peek('keep')).toEqual({ v: 1 })
    expect(f.remote.calls.write).toBe(2)
  })
})

describe('invalid namespaces and layer lists', () => {
  it('refuses invalid namespace names with InvalidKeyError', async () => {
    const f = await seeded()
    for (const name of ['', 5, null, 'a\nb', 'x'.repeat(MAX_KEY_LENGTH + 1)] as never[]) {
      await expectRefused(f, () => f.cache.namespace(name), InvalidKeyError, 'INVALID_KEY')
      await expectRefused(f, () => f.cache.namespace('ok').namespace(name), InvalidKeyError, 'INVALID_KEY')
    }
  })

  it('refuses empty, non-array and non-layer lists and duplicate layer names', () => {
    const l1 = new MemoryLayer()
    const invalid: [string, unknown][] = [
      ['empty', []],
      ['not an array', l1],
      ['undefined', undefined],
      ['a null layer', [null]],
      ['a plain object', [{}]],
      ['the same layer twice', [l1, l1]],
      ['two layers with the same name', [new MemoryLayer(), new MemoryLayer()]],
      ['a remote named like L1', [new MemoryLayer({ name: 'x' }), new RemoteLayer({ name: 'x' })]],
    ]
    for (const [label, layers] of invalid) {
      let error: unknown
      try {
        new CacheStack(layers as never)
      } catch (e) {
        error = e
      }
      expect(error, label).toBeInstanceOf(InvalidOptionError)
      expect((error as LayerCacheError).code, label).toBe('INVALID_OPTION')
    }
    expect(
      new CacheStack([new MemoryLayer({ name: 'a' }), new RemoteLayer({ name: 'b' })]).layers,
    ).toHaveLength(2)
  })
})
