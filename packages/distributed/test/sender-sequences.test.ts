import { describe, expect, it } from 'vitest'
import { SenderSequences } from '../src/sender-sequences'

describe('SenderSequences', () => {
  it('places each sender’s messages by number alone', () => {
    const senders = new SenderSequences()
    expect(senders.observe('a', 1)).toBe('next')
    expect(senders.observe('a', 2)).toBe('next')
    expect(senders.observe('a', 2)).toBe('replay')
    expect(senders.observe('a', 1)).toBe('replay')
    expect(senders.observe('a', 5)).toBe('gap')
    expect(senders.observe('a', 4)).toBe('replay')
    expect(senders.observe('a', 6)).toBe('next')
  })

  it('a sender first heard past its first message is a gap: its earlier messages may be lost', () => {
    const senders = new SenderSequences()
    expect(senders.observe('late', 7)).toBe('gap')
    expect(senders.observe('late', 8)).toBe('next')
  })

  it('after a flush, each known sender’s next jump is covered; replays are still refused', () => {
    const senders = new SenderSequences()
    senders.observe('a', 1)
    senders.observe('b', 1)
    senders.flushed()
    expect(senders.observe('a', 1)).toBe('replay')
    expect(senders.observe('a', 9)).toBe('next')
    expect(senders.observe('a', 11)).toBe('gap') // a loss after the flush is not covered by it
    expect(senders.observe('b', 4)).toBe('next')
    expect(senders.observe('new', 3)).toBe('gap')
  })

  it('is bounded: the least recently heard sender is forgotten first', () => {
    const senders = new SenderSequences(2)
    senders.observe('a', 1)
    senders.observe('b', 1)
    senders.observe('a', 2)
    senders.observe('c', 1)
    expect(senders.size).toBe(2)
    expect(senders.observe('a', 2)).toBe('replay') // kept
    expect(senders.observe('b', 1)).toBe('next') // forgotten: counts as first heard
  })
})
