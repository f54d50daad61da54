export type SequenceVerdict = 'first' | 'next' | 'gap' | 'duplicate'

/**
 * The last sequence number heard from each sender (bounded: the least recently heard senders are
 * forgotten first). A jump means messages were lost in between.
 */
export class SenderSequences {
  private readonly last = new Map<string, number>()

  constructor(private readonly maxSenders = 10_000) {}

  observe(sender: string, sequence: number): SequenceVerdict {
    const previous = this.last.get(sender)
    if (previous !== undefined && sequence <= previous) return 'duplicate'
    this.last.delete(sender) // re-inserted last: Map order is the recency order
    this.last.set(sender, sequence)
    if (this.last.size > this.maxSenders) this.last.delete(this.last.keys().next().value as string)
    if (previous === undefined) return 'first'
    return sequence === previous + 1 ? 'next' : 'gap'
  }

  /** After a reconnect every sender's next number is a new baseline (the gap is already handled). */
  reset(): void {
    this.last.clear()
  }

  get size(): number {
    return this.last.size
  }
}
