import type { CacheEntry } from '@layercache/core'
import { markedStale } from '@layercache/core'
import { LuaScript } from './lua-script'

/**
 * Marks one stored entry stale in place (soft invalidation). Bumps the key's fence counter (KEYS[2], in
 * the value's slot, living ARGV[3] ms), so a load of the key that began earlier, on any instance, does
 * not write its value back over the expiry. Then, with a new payload (ARGV[2] not empty), replaces the
 * value (KEYS[1]) only if it still holds ARGV[1], the bytes it was read as, keeping its TTL; a removed
 * key is never written back. The caller must have moved the fences loads compare (this key's counter,
 * or the tags' epochs, or the group log) before it read the entry: then whatever changed the key since
 * the read is a plain write or a removal, newer than the expiry, and is left as it is (a load's
 * write-back landing in between would otherwise stay fresh: the history checker found that). Answers 1
 * when it marked the entry, else 0. A key of another type answers 0.
 */
const MARK_STALE = new LuaScript(`
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if ARGV[2] == '' then return 0 end
local current = redis.pcall('GET', KEYS[1])
if type(current) ~= 'string' or current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1`)

/** What marking needs of its Redis layer: reads, the codec, the fence counter and scripts under its timeout. */
export interface StaleMarkerHost {
  /** The stored bytes of `full`, or null. */
  readRaw(full: string): Promise<Buffer | null>
  decode(raw: Buffer, full: string): CacheEntry | undefined | Promise<CacheEntry | undefined>
  /** The payload `entry` is stored as (serialised and, when large, compressed); throws if it cannot be. */
  encode(entry: CacheEntry, full: string): Promise<string | Buffer>
  fenceKeyOf(full: string): string
  runScript(
    operation: string,
    script: LuaScript,
    keys: readonly string[],
    args: readonly (string | number | Buffer)[],
  ): Promise<unknown>
}

/** How marking one key went: `marked`; `absent` (nothing there, or it changed meanwhile); `unmarkable`. */
export type MarkOutcome = 'marked' | 'absent' | 'unmarkable'

/**
 * Soft invalidation in Redis: each key's entry is read, decoded, marked stale (`markedStale`) and written
 * back by MARK_STALE, which checks it is still the bytes read. Two round trips per key, keys in parallel.
 * An entry that cannot be re-encoded (it would pass `maxValueBytes` with its new field) is `unmarkable`:
 * the layer removes it instead. A corrupt entry is left as it is (reads already count it as a miss).
 */
export class StaleMarker {
  constructor(
    private readonly host: StaleMarkerHost,
    private readonly fenceMs: number,
  ) {}

  mark(fulls: readonly string[], operation: string): Promise<MarkOutcome[]> {
    return Promise.all(fulls.map((full) => this.markOne(full, operation)))
  }

  private async markOne(full: string, operation: string): Promise<MarkOutcome> {
    const host = this.host
    const raw = await host.readRaw(full)
    let entry: CacheEntry | undefined
    if (raw !== null) {
      try {
        entry = await host.decode(raw, full)
      } catch {
        entry = undefined
      }
    }
    let payload: string | Buffer | undefined
    let unmarkable = false
    if (entry !== undefined) {
      try {
        payload = await host.encode(markedStale(entry, Date.now()), full)
      } catch {
        unmarkable = true
      }
    }
    const reply = await host.runScript(
      operation,
      MARK_STALE,
      [full, host.fenceKeyOf(full)],
      [raw ?? '', payload ?? '', this.fenceMs],
    )
    if (unmarkable) return 'unmarkable'
    return Number(reply) === 1 ? 'marked' : 'absent'
  }
}
