import { describe, expect, it } from 'vitest'
import { shardIndexOf } from '../src/index-layout'
import { fnv1aBytes, fnv1aUtf8 } from '../src/key-hash'

describe('fnv1aUtf8 (the shard of a key)', () => {
  it('is 32-bit FNV-1a (published test vectors)', () => {
    expect(fnv1aUtf8('')).toBe(0x811c9dc5)
    expect(fnv1aUtf8('a')).toBe(0xe40c292c)
    expect(fnv1aUtf8('foobar')).toBe(0xbf9cf968)
  })

  it('hashes the UTF-8 bytes Redis stores, so a migration reading raw members agrees with writers', () => {
    const samples = [
      'plain:key',
      'é',
      'ß€',
      '日本語',
      '😀',
      'a😀b',
      'x\uffff',
      '\u07ff\u0800',
      'lone\ud800',
      'lone\udc00x',
    ]
    for (let i = 0; i < 2000; i++) {
      let text = ''
      const length = i % 24
      for (let j = 0; j < length; j++) {
        // Mostly ASCII, with 2-, 3- and 4-byte code points mixed in.
        const pick = (i * 31 + j * 17) % 10
        text +=
          pick < 6
            ? String.fromCharCode(32 + ((i + j) % 95))
            : String.fromCodePoint([0xe9, 0x20ac, 0x1f600, 0x10ffff][pick - 6]!)
      }
      samples.push(text)
    }
    for (const text of samples) {
      expect(fnv1aUtf8(text), JSON.stringify(text)).toBe(fnv1aBytes(Buffer.from(text)))
      for (const count of [1, 4, 16, 1024]) {
        expect(shardIndexOf(text, count)).toBe(shardIndexOf(Buffer.from(text), count))
      }
    }
  })
})
