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

/** The key prefix of generation `n`: every key of the stack lives under it. */
export function generationPrefix(generation: number): string {
  return `g${generation}:`
}

/**
 * The stack's current generation. Every key lives under `g<n>:`; bumping moves the whole stack to fresh,
 * empty key space at once. With a shared layer (Redis) the number lives there, so every instance moves
 * together: it is checked alongside every remote read and write (in parallel, same round trip), a read
 * that raced a bump is answered as a miss, and a write or delete is redone in the new generation. The
 * configured generation is a floor: the shared number is raised to it, never lowered.
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
   * down) moves nothing: the remote operation it guards fails on its own.
   */
  async verify(): Promise<boolean> {
    if (this.source === undefined) return true
    const before = this.current
    let latest: number
    try {
      // A shared number below ours (deleted, reset) is raised, or old keys would come back.
      latest = await this.source.sharedGeneration!(Math.max(this.floor, before))
    } catch (error) {
      // Unreachable: the guarded operation fails on its own. Unusable: said, and never adopted.
      if (error instanceof CorruptEntryError) this.hooks.refused(error)
      return this.current === before
    }
    if (latest > this.current) this.adopt(latest)
    return this.current === before
  }

  /** A remote read, answered as `miss` when the generation moved while it ran. */
  guard<T>(read: Promise<T>, miss: T): Promise<T> {
    if (this.source === undefined) return read
    return Promise.all([read, this.verify()]).then(([value, same]) => (same ? value : miss))
  }

  /** Runs `op` (which must build its keys when called) and runs it again if the generation moved meanwhile. */
  async around<T>(op: () => Promise<T>): Promise<T> {
    if (this.source === undefined) return op()
    if (this.pending) await this.ready
    const [result, same] = await Promise.all([op(), this.verify()])
    return same ? result : op()
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
