import { CorruptEntryError, InvalidOptionError } from './errors'
import type { CacheLayer } from './layer'
import { assertKnownOptions, assertPositiveInteger } from './validation'

export interface GenerationCleanupOptions {
  /** Keys removed per page when an old generation is cleaned up (pages never block Redis). Default 500. */
  readonly batchSize?: number
}

/** What the stack does when the generation moves under it (local or seen in the shared layer). */
export interface GenerationHooks {
  /** Drop what the previous generation left in process memory and fence work in flight. */
  readonly moved: (next: number, previous: number) => void
  /** The shared layer holds something that is not a generation: it was not adopted. */
  readonly refused: (error: CorruptEntryError) => void
}

export function readGenerationOption(value: unknown): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidOptionError(`Invalid generation ${String(value)}: expected a whole number ≥ 0`)
  }
  return value
}

export function readCleanupOption(value: unknown): Required<GenerationCleanupOptions> | undefined {
  if (value === undefined) return undefined
  assertKnownOptions(value, ['batchSize'], 'generationCleanup')
  const batchSize = assertPositiveInteger((value as GenerationCleanupOptions).batchSize, 'batchSize') ?? 500
  return { batchSize }
}

/** A read of the shared generation that failed: the generation an operation ran in is unknown. */
class Unread {
  constructor(readonly error: unknown) {}
}

type Check = 'same' | 'moved' | Unread

/** The key prefix of generation `n`: every key of the stack lives under it. */
export function generationPrefix(generation: number): string {
  return `g${generation}:`
}

/** The generation a stored key or scope (`g<n>:…`) lives in; undefined when it names none. */
export function generationOf(stored: string): number | undefined {
  const match = /^g(\d{1,16}):/.exec(stored)
  return match === null ? undefined : Number(match[1])
}

/**
 * The stack's current generation. Every key lives under `g<n>:`; bumping moves the whole stack to fresh,
 * empty key space at once. With a shared layer (Redis) the number lives there, so every instance moves
 * together: it is checked alongside every remote read and write (in parallel, same round trip), a read
 * that raced a bump is answered as a miss, and a write or delete is redone in the new generation. A check
 * that could not read the number vouches for nothing: it is read again once the operation is over, and
 * the operation fails if that read fails too (a bump whose reply was lost moved the fleet without telling
 * anyone, so an instance cannot assume it is still in the current generation). The configured generation
 * is a floor: the shared number is raised to it, never lowered.
 */
export class Generations {
  current: number
  /** `g<current>:`, kept as a field because every key is built with it. */
  prefix: string
  /**
   * True until the first read of the shared generation settled: remote operations wait for it, so a new
   * instance starts in the fleet's generation rather than answering misses from its configured one.
   */
  pending: boolean
  readonly ready: Promise<void>
  /** A read prompted by a hint is under way; `rereadAgain`: another hint came meanwhile. */
  private rereading = false
  private rereadAgain = false

  constructor(
    readonly floor: number,
    private readonly source: CacheLayer | undefined,
    readonly cleanup: Required<GenerationCleanupOptions> | undefined,
    private readonly hooks: GenerationHooks,
  ) {
    this.current = floor
    this.prefix = generationPrefix(floor)
    this.pending = source !== undefined
    this.ready = this.pending
      ? this.verify().then(() => {
          this.pending = false
        })
      : Promise.resolve()
  }

  get shared(): boolean {
    return this.source !== undefined
  }

  /**
   * Reads the shared generation and moves forward to it if it is newer; true when the generation did
   * not move while the read ran (nor by it). Never backwards: a read that started before this instance
   * learned a newer generation (from the bus, or its own bump) answers the older one, which must not be
   * adopted, or the stack would go back to keys every other instance has left. A failing read (Redis
   * down) moves nothing and answers as if nothing moved: for hints and reconnections, which guard no
   * operation. An operation is guarded with `check` (through `guard`, `around`, `confirm`), which tells a
   * failed read apart.
   */
  async verify(): Promise<boolean> {
    if (this.source === undefined) return true
    return (await this.check()) !== 'moved'
  }

  /**
   * One read of the shared generation: `same` (it did not move while the read ran), `moved` (it did, and
   * this instance moved with it) or `Unread` (the number could not be read, and nothing moved here).
   * Unread is not same: the operation beside it may have succeeded in a generation the fleet has left, as
   * when Redis was paused between the two, a reply was late, or a half-open circuit let the operation
   * through as its one probe and refused this read.
   */
  private async check(): Promise<Check> {
    const before = this.current
    let latest: number
    try {
      // A shared number below ours (deleted, reset) is raised, or old keys would come back.
      latest = await this.source!.sharedGeneration!(Math.max(this.floor, before))
    } catch (error) {
      if (this.current !== before) return 'moved'
      // Unusable: said, and never adopted; the stack works on in the generation it has (documented).
      if (error instanceof CorruptEntryError) {
        this.hooks.refused(error)
        return 'same'
      }
      return new Unread(error)
    }
    if (latest > this.current) this.adopt(latest)
    return this.current === before ? 'same' : 'moved'
  }

  /**
   * After a check that could not read the number, reads it once more, now that the guarded operation is
   * over (a half-open circuit is closed by then, a late reply has come or not): a read that completes
   * after the operation vouches for it as well as one beside it. Throws when the number is still unknown.
   */
  private async recheck(first: Check): Promise<'same' | 'moved'> {
    if (!(first instanceof Unread)) return first
    const again = await this.check()
    if (again instanceof Unread) throw again.error
    return again
  }

  /**
   * A remote read, answered as `miss` when the generation moved while it ran. When the generation could
   * not be read, the answer is not taken: it may come from a generation the fleet has left (the read
   * fails with the generation read's error once a second read fails too).
   */
  guard<T>(read: Promise<T>, miss: T): Promise<T> {
    if (this.source === undefined) return read
    return Promise.all([read, this.check()]).then(([value, checked]) =>
      checked === 'same'
        ? value
        : checked === 'moved'
          ? miss
          : this.recheck(checked).then((again) => (again === 'same' ? value : miss)),
    )
  }

  /**
   * Runs `op` (which must build its keys when called) and runs it again if the generation moved meanwhile.
   * When the generation could not be read beside it, it is read again after `op`; if that fails too, the
   * operation rejects (it may have run in a generation nobody reads: for a delete, not done).
   */
  async around<T>(op: () => Promise<T>): Promise<T> {
    if (this.source === undefined) return op()
    if (this.pending) await this.ready
    const [result, checked] = await Promise.all([op(), this.check()])
    return (await this.recheck(checked)) === 'same' ? result : op()
  }

  /**
   * For an operation that needs the current generation before it starts (prefix and pattern
   * invalidations build their scope from it): reads the shared number, moving forward if it moved, and
   * throws when it cannot be read rather than run in a generation the fleet may have left.
   */
  async confirm(): Promise<void> {
    if (this.source === undefined) return
    if (this.pending) await this.ready
    const checked = await this.check()
    if (checked instanceof Unread) throw checked.error
  }

  /** Moves to a new generation (in the shared layer when there is one) and returns it. */
  async bump(): Promise<number> {
    if (this.pending) await this.ready
    const next =
      this.source === undefined
        ? this.current + 1
        : await this.source.bumpSharedGeneration!(Math.max(this.floor, this.current))
    this.adopt(next)
    return next
  }

  /**
   * A bus message says another instance moved to `generation`. Only a hint (the message may be unsigned,
   * or forged): with a shared layer the number is read from there again (at most one read under way, one
   * more queued), never taken from the message; without one nothing moves. True when it names a newer
   * generation than this one, so the caller drops memory meanwhile.
   */
  hinted(generation: number): boolean {
    if (!(generation > this.current)) return false
    this.reread()
    return true
  }

  /**
   * A bus message names a stored key or scope (`g<n>:…`) of another instance: when it lives in a newer
   * generation than this one, this instance missed a move (a bump whose reply was lost announces
   * nothing), and what its memory holds under the old names is not what the message invalidated. Taken
   * as a hint (see `hinted`); true when the caller should drop memory.
   */
  named(stored: string): boolean {
    const generation = generationOf(stored)
    return generation !== undefined && this.hinted(generation)
  }

  private reread(): void {
    if (this.source === undefined) return
    if (this.rereading) {
      this.rereadAgain = true
      return
    }
    this.rereading = true
    void this.verify().then(() => {
      this.rereading = false
      if (!this.rereadAgain) return
      this.rereadAgain = false
      this.reread()
    })
  }

  private adopt(next: number): void {
    const previous = this.current
    this.current = next
    this.prefix = generationPrefix(next)
    this.hooks.moved(next, previous)
  }
}
