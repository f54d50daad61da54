/**
 * - `next`: the sender's first message, or the one after the last heard from it;
 * - `gap`: messages of the sender may have been missed: its number jumped, or the first message heard
 *   from it is not its first (earlier ones may have been sent while this instance could not hear them);
 * - `replay`: not newer than the last heard from the sender: a duplicate or a replay.
 */
export type SequenceVerdict = 'next' | 'gap' | 'replay'

interface Heard {
  readonly sequence: number
  /** `flushes` when it was heard: a jump over messages sent before a later flush is covered by it. */
  readonly flushes: number
}

/**
 * The last sequence number heard from each sender. A sender id is random per bus instance and its numbers
 * only grow, so (sender, number) orders its messages without any clock; this is what refuses replays.
 * Bounded: the least recently heard senders are forgotten first, and a forgotten sender's next message
 * counts as a first one (a gap, unless it is number 1).
 */
export class SenderSequences {
  private readonly last = new Map<string, Heard>()
  private flushes = 0

  constructor(private readonly maxSenders = 10_000) {}

  observe(sender: string, sequence: number): SequenceVerdict {
    const previous = this.last.get(sender)
    if (previous !== undefined && sequence <= previous.sequence) return 'replay'
    this.last.delete(sender) // re-inserted last: Map order is the recency order
    this.last.set(sender, { sequence, flushes: this.flushes })
    if (this.last.size > this.maxSenders) this.last.delete(this.last.keys().next().value as string)
    if (previous === undefined) return sequence === 1 ? 'next' : 'gap'
    if (sequence === previous.sequence + 1 || previous.flushes !== this.flushes) return 'next'
    return 'gap'
  }

  /**
   * Memory was flushed because messages may have been lost (a reconnect): each known sender's next jump
   * is covered by that flush. Numbers already heard stay, so replays are still refused.
   */
  flushed(): void {
    this.flushes++
  }

  /** Whether a message of `sender` was heard (and not forgotten since). */
  knows(sender: string): boolean {
    return this.last.has(sender)
  }

  get size(): number {
    return this.last.size
  }
}
