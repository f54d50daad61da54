import { CacheStack, InvalidKeyError } from '@layercache/core'
import { describe, expect, it } from 'vitest'
import { KeyVersions } from '../src/key-versions'
import { MemoryLayer } from './support/remote-layer'

describe('key version counters', () => {
  it('start at 0, bump by one, and make versioned keys unreachable', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    const key = async () => `user:42:v${await cache.keyVersion('user:42')}:profile`
    expect(await cache.keyVersion('user:42')).toBe(0)
    await cache.set(await key(), 'old profile')
    expect(await cache.get(await key())).toBe('old profile')
    expect(await cache.bumpKeyVersion('user:42')).toBe(1)
    expect(await cache.get(await key())).toBeUndefined()
    expect(await cache.keyVersion('user:42')).toBe(1)
    expect(await cache.keyVersion('user:43')).toBe(0)
  })

  it('are scoped by namespace, validated, and reported as an invalidate event', async () => {
    const cache = new CacheStack([new MemoryLayer()])
    const events: unknown[] = []
    cache.on('invalidate', (event) => events.push(event))
    await cache.namespace('t1').bumpKeyVersion('catalog')
    expect(await cache.namespace('t2').keyVersion('catalog')).toBe(0)
    expect(await cache.namespace('t1').keyVersion('catalog')).toBe(1)
    expect(events).toEqual([{ kind: 'version', name: 't1:catalog', version: 1 }])
    await expect(cache.keyVersion('')).rejects.toBeInstanceOf(InvalidKeyError)
    await expect(cache.bumpKeyVersion('a\nb')).rejects.toBeInstanceOf(InvalidKeyError)
  })

  it('in memory, stay bounded and never hand out a version number twice for a name', async () => {
    const versions = new KeyVersions(undefined, 2)
    expect(await versions.bump('a')).toBe(1)
    expect(await versions.bump('a')).toBe(2)
    expect(await versions.bump('b')).toBe(1)
    expect(await versions.bump('c')).toBe(1) // 'a' (at 2) is forgotten: names restart above 2
    expect(await versions.current('a')).toBe(2)
    expect(await versions.bump('a')).toBe(3)
    expect(await versions.current('never-seen')).toBeGreaterThanOrEqual(2)
  })
})
