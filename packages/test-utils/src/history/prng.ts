// A small seeded pseudo-random generator for the history checker: the same seed gives the same workload,
// the same latencies and the same faults. Streams are forked by label (`fork('latency:i0')`), so adding
// draws to one stream never shifts another, and a history stays comparable when one part changes.

/** xmur3: hashes a string into a 32-bit seed. */
function hashString(text: string): number {
  let h = 1779033703 ^ text.length
  for (let i = 0; i < text.length; i++) {
    h = Math.imul(h ^ text.charCodeAt(i), 3432918353)
    h = (h << 13) | (h >>> 19)
  }
  h = Math.imul(h ^ (h >>> 16), 2246822507)
  h = Math.imul(h ^ (h >>> 13), 3266489909)
  return (h ^ (h >>> 16)) >>> 0
}

/** A seeded generator (sfc32: small, fast, passes PractRand to 2^40); never Math.random. */
export class Prng {
  readonly seed: string
  #a: number
  #b: number
  #c: number
  #d: number

  constructor(seed: string | number) {
    this.seed = String(seed)
    this.#a = hashString(`${this.seed}/a`)
    this.#b = hashString(`${this.seed}/b`)
    this.#c = hashString(`${this.seed}/c`)
    this.#d = hashString(`${this.seed}/d`)
    for (let i = 0; i < 12; i++) this.next()
  }

  /** A float in [0, 1). */
  next(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0
    this.#d = (this.#d + 1) | 0
    this.#a = this.#b ^ (this.#b >>> 9)
    this.#b = (this.#c + (this.#c << 3)) | 0
    this.#c = (this.#c << 21) | (this.#c >>> 11)
    this.#c = (this.#c + t) | 0
    return (t >>> 0) / 4294967296
  }

  /** An integer in [min, max] (both included). */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1))
  }

  /** A float in [min, max). */
  between(min: number, max: number): number {
    return min + this.next() * (max - min)
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('Prng.pick: no items')
    return items[Math.floor(this.next() * items.length)]!
  }

  /** `count` distinct items (all of them when there are fewer), in random order. */
  sample<T>(items: readonly T[], count: number): T[] {
    const pool = [...items]
    for (let i = pool.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1))
      ;[pool[i], pool[j]] = [pool[j]!, pool[i]!]
    }
    return pool.slice(0, Math.min(count, pool.length))
  }

  /** Picks a key of `weights` with probability proportional to its weight. */
  weighted<K extends string>(weights: Readonly<Partial<Record<K, number>>>): K {
    const entries = Object.entries(weights).filter(([, w]) => typeof w === 'number' && w > 0) as [K, number][]
    const total = entries.reduce((sum, [, w]) => sum + w, 0)
    if (total <= 0) throw new RangeError('Prng.weighted: no positive weight')
    let roll = this.next() * total
    for (const [key, weight] of entries) {
      roll -= weight
      if (roll < 0) return key
    }
    return entries[entries.length - 1]![0]
  }

  /** An independent stream, fixed by this generator's seed and `label` (not by how far this one has run). */
  fork(label: string): Prng {
    return new Prng(`${this.seed}:${label}`)
  }
}
