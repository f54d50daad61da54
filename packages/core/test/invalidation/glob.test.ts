import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { LayerCacheError } from '../../src/errors'
import { InvalidPatternError } from '../../src/invalidation/errors'
import {
  compileGlob,
  globToRedisMatch,
  literalPrefixOf,
  MAX_PATTERN_LENGTH,
  validatePattern,
} from '../../src/invalidation/glob'

/** The model: the definition of the glob, written as directly (and exponentially) as possible. */
function naiveMatch(pattern: string, key: string): boolean {
  if (pattern.length === 0) return key.length === 0
  const head = pattern.charAt(0)
  if (head === '*')
    return naiveMatch(pattern.slice(1), key) || (key.length > 0 && naiveMatch(pattern, key.slice(1)))
  if (key.length === 0) return false
  return (head === '?' || head === key.charAt(0)) && naiveMatch(pattern.slice(1), key.slice(1))
}

/** A port of Redis' stringmatchlen (util.c) for ASCII strings: `* ? [...] [^...] [a-z] \x`. */
function redisMatch(pattern: string, key: string): boolean {
  let p = 0
  let k = 0
  while (p < pattern.length && k < key.length) {
    const char = pattern.charAt(p)
    if (char === '*') {
      while (pattern.charAt(p + 1) === '*') p++
      if (p === pattern.length - 1) return true
      for (let from = k; from < key.length; from++) {
        if (redisMatch(pattern.slice(p + 1), key.slice(from))) return true
      }
      return false
    }
    if (char === '?') {
      k++
    } else if (char === '[') {
      p++
      const negate = pattern.charAt(p) === '^'
      if (negate) p++
      let matched = false
      for (;;) {
        if (pattern.charAt(p) === '\\' && pattern.length - p >= 2) {
          p++
          if (pattern.charAt(p) === key.charAt(k)) matched = true
        } else if (pattern.charAt(p) === ']') {
          break
        } else if (p >= pattern.length) {
          p--
          break
        } else if (pattern.length - p >= 3 && pattern.charAt(p + 1) === '-') {
          let start = pattern.charCodeAt(p)
          let end = pattern.charCodeAt(p + 2)
          if (start > end) [start, end] = [end, start]
          const code = key.charCodeAt(k)
          if (code >= start && code <= end) matched = true
          p += 2
        } else if (pattern.charAt(p) === key.charAt(k)) {
          matched = true
        }
        p++
      }
      if (negate) matched = !matched
      if (!matched) return false
      k++
    } else {
      if (char === '\\' && pattern.length - p >= 2) p++
      if (pattern.charAt(p) !== key.charAt(k)) return false
      k++
    }
    p++
    if (k === key.length) {
      while (pattern.charAt(p) === '*') p++
      break
    }
  }
  return p >= pattern.length && k === key.length
}

const KEY_CHARS = ['a', 'b', '.', '[', ']', '\\', '*', '?', '-', '^']
const PATTERN_CHARS = ['a', 'b', '*', '?', '.', '[', ']', '\\', '-', '^']
const keyArb = fc.string({ unit: fc.constantFrom(...KEY_CHARS), maxLength: 10 })
const randomPatternArb = fc.string({ unit: fc.constantFrom(...PATTERN_CHARS), minLength: 1, maxLength: 8 })

/** Patterns derived from a key match it often, so both outcomes get exercised. */
const keyAndPatternArb = fc.oneof(
  fc.tuple(keyArb, randomPatternArb),
  fc
    .tuple(
      keyArb,
      fc.array(fc.constantFrom('keep', 'keep', 'keep', '?', '*', 'drop-star', 'swap'), { maxLength: 10 }),
    )
    .map(([key, edits]): [string, string] => {
      let pattern = ''
      for (let i = 0; i < key.length; i++) {
        const edit = edits[i] ?? 'keep'
        const char = key.charAt(i)
        if (edit === '?') pattern += '?'
        else if (edit === '*') pattern += `*${char}`
        else if (edit === 'drop-star') pattern += '*'
        else if (edit === 'swap') pattern += char === 'a' ? 'b' : 'a'
        else pattern += char
      }
      return [key, pattern.length === 0 ? '*' : pattern]
    }),
)

describe('validatePattern', () => {
  it('returns a valid pattern unchanged', () => {
    expect(validatePattern('user:*')).toBe('user:*')
    expect(validatePattern('x'.repeat(MAX_PATTERN_LENGTH))).toHaveLength(MAX_PATTERN_LENGTH)
    expect(validatePattern('é?[]\\ ~')).toBe('é?[]\\ ~')
  })

  it.each([
    ['a number', 42, /expected a string/],
    ['undefined', undefined, /expected a string/],
    ['null', null, /expected a string/],
    ['an empty string', '', /non-empty/],
    ['a pattern over the length limit', 'x'.repeat(MAX_PATTERN_LENGTH + 1), /at most 1024/],
    ['a NUL character', 'a\u0000b', /U\+0000 at index 1/],
    ['a newline', 'user:*\n', /U\+000a at index 6/],
    ['a unit separator', '\u001f', /U\+001f at index 0/],
    ['DEL', 'a\u007f', /U\+007f at index 1/],
  ])('rejects %s with InvalidPatternError', (_label, pattern, message) => {
    let error: unknown
    try {
      validatePattern(pattern)
    } catch (caught) {
      error = caught
    }
    expect(error).toBeInstanceOf(InvalidPatternError)
    expect(error).toBeInstanceOf(LayerCacheError)
    expect((error as InvalidPatternError).code).toBe('INVALID_PATTERN')
    expect((error as InvalidPatternError).name).toBe('InvalidPatternError')
    expect((error as Error).message).toMatch(message)
  })

  it('keeps the message short for a huge pattern', () => {
    expect(() => validatePattern('y'.repeat(5000))).toThrow(/^Invalid pattern "y{60}…": 5000 characters/)
  })

  it('compileGlob and globToRedisMatch validate too', () => {
    expect(() => compileGlob('')).toThrow(InvalidPatternError)
    expect(() => compileGlob('a\tb')).toThrow(InvalidPatternError)
    expect(() => globToRedisMatch('')).toThrow(InvalidPatternError)
    expect(() => globToRedisMatch(7 as unknown as string)).toThrow(InvalidPatternError)
  })
})

describe('compileGlob', () => {
  const matches = (pattern: string, key: string) => compileGlob(pattern)(key)

  it('matches a pattern without wildcards only against itself', () => {
    expect(matches('user:1', 'user:1')).toBe(true)
    expect(matches('user:1', 'user:10')).toBe(false)
    expect(matches('user:1', 'user:')).toBe(false)
    expect(matches('user:1', '')).toBe(false)
  })

  it('* matches any sequence, including the empty one', () => {
    expect(matches('*', '')).toBe(true)
    expect(matches('*', 'anything at all')).toBe(true)
    expect(matches('user:*', 'user:')).toBe(true)
    expect(matches('user:*', 'user:42:profile')).toBe(true)
    expect(matches('user:*', 'users:42')).toBe(false)
    expect(matches('*:profile', 'user:42:profile')).toBe(true)
    expect(matches('*:profile', 'user:42:profile:old')).toBe(false)
    expect(matches('user:*:profile', 'user::profile')).toBe(true)
    expect(matches('user:*:profile', 'user:1:2:profile')).toBe(true)
    expect(matches('user:*:profile', 'user:1:settings')).toBe(false)
    expect(matches('a**b', 'ab')).toBe(true)
    expect(matches('a**', 'a')).toBe(true)
    expect(matches('**', '')).toBe(true)
  })

  it('? matches exactly one UTF-16 code unit', () => {
    expect(matches('user:?', 'user:1')).toBe(true)
    expect(matches('user:?', 'user:')).toBe(false)
    expect(matches('user:?', 'user:12')).toBe(false)
    expect(matches('??', 'ab')).toBe(true)
    expect(matches('?', 'é')).toBe(true)
    // An astral character is two code units.
    expect(matches('?', '😀')).toBe(false)
    expect(matches('??', '😀')).toBe(true)
    expect(matches('a?c*', 'abcdef')).toBe(true)
    expect(matches('*?', '')).toBe(false)
  })

  it('treats regex and Redis metacharacters as literals', () => {
    expect(matches('a[bc]d', 'a[bc]d')).toBe(true)
    expect(matches('a[bc]d', 'abd')).toBe(false)
    expect(matches('a\\*', 'a\\xyz')).toBe(true)
    expect(matches('a\\*', 'a*')).toBe(false)
    expect(matches('a.b', 'a.b')).toBe(true)
    expect(matches('a.b', 'axb')).toBe(false)
    expect(matches('(a+)$^|{1}', '(a+)$^|{1}')).toBe(true)
    expect(matches('(a+)$', 'aa')).toBe(false)
  })

  it('treats * and ? in keys as ordinary characters', () => {
    expect(matches('a?', 'a*')).toBe(true)
    expect(matches('a*', 'a?')).toBe(true)
    expect(matches('a*b', 'a*?b')).toBe(true)
  })

  it('backtracks to the last star when a greedy attempt fails', () => {
    expect(matches('*ab', 'aab')).toBe(true)
    expect(matches('*a*b', 'xaybzb')).toBe(true)
    expect(matches('a*b*c', 'abbbcbc')).toBe(true)
    expect(matches('a*b*c', 'abbbcb')).toBe(false)
    expect(matches('*?a', 'aaa')).toBe(true)
    expect(matches('x*?y*z', 'xqyyz')).toBe(true)
  })

  it('survives pathological patterns on long keys without exponential blow-up', () => {
    const long = 'a'.repeat(5000)
    expect(matches('a*a*a*a*a*a*a*a*a*a*b', long)).toBe(false)
    expect(matches('a*a*a*a*a*a*a*a*a*a*a', long)).toBe(true)
    expect(matches('*a*a*a*a*a*a*a*a*a*a*', long)).toBe(true)
    expect(matches(`${'*a'.repeat(200)}b`, long)).toBe(false)
    expect(matches('*'.repeat(500) + 'b', long)).toBe(false)
    expect(matches(`${'?'.repeat(1000)}*`, long)).toBe(true)
    expect(matches(`*${'?'.repeat(1000)}b`, long)).toBe(false)
  })

  it('returns a reusable matcher', () => {
    const isUser = compileGlob('user:*:name')
    expect(['user:1:name', 'user:2:mail', 'user:3:name', 'order:1:name'].filter(isUser)).toEqual([
      'user:1:name',
      'user:3:name',
    ])
  })

  it('agrees with the naive recursive model', () => {
    fc.assert(
      fc.property(keyAndPatternArb, ([key, pattern]) => {
        expect(compileGlob(pattern)(key)).toBe(naiveMatch(pattern, key))
      }),
      { numRuns: 2000, seed: 20240601 },
    )
  })

  it('agrees with the model on random patterns and keys over a two-letter alphabet', () => {
    const ab = (chars: string[], min: number, max: number) =>
      fc.string({ unit: fc.constantFrom(...chars), minLength: min, maxLength: max })
    fc.assert(
      fc.property(ab(['a', 'b', '*', '?'], 1, 7), ab(['a', 'b'], 0, 9), (pattern, key) => {
        expect(compileGlob(pattern)(key)).toBe(naiveMatch(pattern, key))
      }),
      { numRuns: 2000, seed: 7 },
    )
  })
})

describe('literalPrefixOf', () => {
  it('is the part before the first wildcard', () => {
    expect(literalPrefixOf('user:*')).toBe('user:')
    expect(literalPrefixOf('user:?:x*')).toBe('user:')
    expect(literalPrefixOf('*user')).toBe('')
    expect(literalPrefixOf('?')).toBe('')
    expect(literalPrefixOf('a[b]\\c')).toBe('a[b]\\c')
  })

  it('every key a pattern matches starts with its literal prefix', () => {
    fc.assert(
      fc.property(keyAndPatternArb, ([key, pattern]) => {
        if (compileGlob(pattern)(key)) expect(key.startsWith(literalPrefixOf(pattern))).toBe(true)
        const prefix = literalPrefixOf(pattern)
        expect(pattern.startsWith(prefix)).toBe(true)
        expect(prefix).not.toMatch(/[*?]/)
      }),
      { numRuns: 1000, seed: 11 },
    )
  })
})

describe('globToRedisMatch', () => {
  it('escapes the Redis specials [ ] \\ and keeps * and ?', () => {
    expect(globToRedisMatch('user:*')).toBe('user:*')
    expect(globToRedisMatch('a?b*')).toBe('a?b*')
    expect(globToRedisMatch('a[bc]d')).toBe('a\\[bc\\]d')
    expect(globToRedisMatch('back\\slash*')).toBe('back\\\\slash*')
    expect(globToRedisMatch('[^a-z]')).toBe('\\[^a-z\\]')
    expect(globToRedisMatch('.+()^$|{}')).toBe('.+()^$|{}')
  })

  it('is needed: without escaping, Redis would read [..] as a class', () => {
    expect(redisMatch('a[bc]d', 'abd')).toBe(true)
    expect(redisMatch(globToRedisMatch('a[bc]d'), 'abd')).toBe(false)
    expect(redisMatch(globToRedisMatch('a[bc]d'), 'a[bc]d')).toBe(true)
  })

  // Cache keys are never empty (Redis' matcher refuses '' even for '*').
  it('means exactly what compileGlob means, under Redis matching rules, on non-empty ASCII keys', () => {
    fc.assert(
      fc.property(keyAndPatternArb, ([key, pattern]) => {
        fc.pre(key.length > 0)
        expect(redisMatch(globToRedisMatch(pattern), key)).toBe(compileGlob(pattern)(key))
      }),
      { numRuns: 2000, seed: 99 },
    )
  })
})
