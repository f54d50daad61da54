import { KeyLayout, listKeysAt } from './key-layout'
import type { RedisCalls, ScriptCall } from './redis-calls'
import { Script } from './redis-calls'
import type { CheckedEntity, CheckedIndexedList, CheckedList } from './schemas'
import * as lua from './scripts'

const READ_FENCED = new Script(lua.READ_FENCED)
const WRITE_FENCED = new Script(lua.WRITE_FENCED)
const DELETE_FENCED = new Script(lua.DELETE_FENCED)
const WRITE_AND_BUMP = new Script(lua.WRITE_AND_BUMP)
const WRITE_ENTITY = new Script(lua.WRITE_ENTITY)
const INVALIDATE_ENTITY = new Script(lua.INVALIDATE_ENTITY)
const BUMP_COUNTER = new Script(lua.BUMP_COUNTER)
const REMOVE_INVALIDATED = new Script(lua.REMOVE_INVALIDATED)
const REGISTER_MEMBER = new Script(lua.REGISTER_MEMBER)
const LIST_ADD = new Script(lua.LIST_ADD)
const LIST_CHANGE = new Script(lua.LIST_CHANGE)
const LIST_DELETE = new Script(lua.LIST_DELETE)
const READ_PAGE = new Script(lua.READ_PAGE)
const LIST_FILL = new Script(lua.LIST_FILL)

/** On a single Redis, how often an invalidation re-reads a membership that keeps changing under it. */
const MAX_ATOMIC_ATTEMPTS = 16

export interface StoredRow {
  /** The row's JSON, or undefined when Redis does not hold it. */
  readonly json: string | undefined
  /** Its invalidation epoch when read: a write-back of a load that began then carries it. */
  readonly epoch: number
  /**
   * The client's lost connections before the read (RedisCalls.losses): a write-back is refused once
   * another was lost.
   */
  readonly losses: number
}

/** What a write-back of a load checks: the epoch it read, and the connection losses before that read. */
export interface ReadFence {
  readonly epoch: number
  readonly losses: number
}

export interface InvalidationOutcome {
  readonly deleted: number
  /** Lists the id was removed from. */
  readonly removed: number
  /** Every list the membership named (their cached pages must go too). */
  readonly lists: readonly string[]
}

export type PageRead = { readonly losses: number } & (
  | { readonly cached: false; readonly epoch: number }
  | { readonly cached: true; readonly epoch: number; readonly total: number; readonly ids: readonly string[] }
)

/** A row of a rebuilt list, checked and ordered. */
export interface RebuiltRow {
  readonly id: string
  readonly json: string
  readonly score: number
}

/**
 * The Redis side of the engine: rows, memberships, indexed and plain lists, and the epochs fencing them.
 * Knows nothing of L1; every method is one protocol step sequence, safe on a single Redis and a Cluster.
 */
export class EntityStore {
  readonly keys: KeyLayout

  constructor(
    private readonly calls: RedisCalls,
    prefix: string,
    /** The fence window, ms: tombstones live this long, epochs twice as long. */
    readonly fenceMs: number,
    private readonly lists: ReadonlyMap<string, CheckedList>,
  ) {
    this.keys = new KeyLayout(prefix)
  }

  private get epochTtl(): number {
    return 2 * this.fenceMs
  }

  // ---------------------------------------------------------------- rows

  async readRows(entity: CheckedEntity, ids: readonly string[]): Promise<StoredRow[]> {
    const losses = this.calls.losses
    const replies = await this.calls.runMany<[string | null, number]>(
      'read rows',
      ids.map((id) => {
        const k = this.keys.entity(entity.type, id)
        return { script: READ_FENCED, keys: [k.value, k.epoch], args: [] }
      }),
    )
    return replies.map(([json, epoch]) => ({ json: json ?? undefined, epoch: Number(epoch), losses }))
  }

  /**
   * Writes rows a load produced, each only if its epoch has not moved since `epoch` was read; refused
   * without a command when the client lost a connection since (`losses`).
   */
  async writeRowsFenced(
    entity: CheckedEntity,
    rows: readonly ({ id: string; json: string } & ReadFence)[],
  ): Promise<boolean[]> {
    const losses = this.calls.losses
    const sent = rows.filter((row) => row.losses === losses)
    const replies = await this.calls.runMany<number>(
      'write rows',
      sent.map(({ id, json, epoch }) => {
        const k = this.keys.entity(entity.type, id)
        return { script: WRITE_FENCED, keys: [k.value, k.epoch], args: [json, entity.ttl, epoch] }
      }),
    )
    let next = 0
    return rows.map((row) => row.losses === losses && Number(replies[next++]) === 1)
  }

  /** Writes a row (or, `onlyIfExists`, refreshes it only if cached); re-scores it in the lists holding it. */
  async writeRow(
    entity: CheckedEntity,
    id: string,
    json: string,
    row: unknown,
    onlyIfExists: boolean,
  ): Promise<{ written: boolean; lists: readonly string[] }> {
    const k = this.keys.entity(entity.type, id)
    const reply = await this.calls.run<unknown[]>('write row', {
      script: WRITE_ENTITY,
      keys: [k.value, k.members, k.epoch],
      args: [json, entity.ttl, onlyIfExists ? '1' : '0', this.epochTtl],
    })
    const written = Number(reply[0]) === 1
    const lists = reply.slice(1).map(String)
    if (written && lists.length > 0) await this.rescore(id, row, lists)
    return { written, lists }
  }

  /** A row's score may have changed: update it where the row still is (ZADD XX), fencing list rebuilds. */
  private async rescore(id: string, row: unknown, listKeys: readonly string[]): Promise<void> {
    const calls: ScriptCall[] = []
    for (const listKey of listKeys) {
      const name = this.keys.listOf(listKey)?.name
      const schema = name === undefined ? undefined : this.lists.get(name)
      if (schema?.kind !== 'indexed') continue
      calls.push({
        script: LIST_CHANGE,
        keys: [listKey, listKeysAt(listKey).epoch],
        args: [id, this.epochTtl, schema.scoreOf(row)],
      })
    }
    await this.calls.runMany('rescore row', calls)
  }

  /**
   * Removes the row and its id from every list whose membership names it. Single Redis: one atomic
   * script that names every list (re-read if the membership changed meanwhile). Cluster: the type's
   * counter, then the row's slot (row, epoch, membership), then each list's slot (id out, tombstone in).
   */
  async invalidateRow(entity: CheckedEntity, id: string): Promise<InvalidationOutcome> {
    const k = this.keys.entity(entity.type, id)
    const counter = entity.listed ? [this.keys.typeCounter(entity.type)] : []
    // The atomic form carries the counter itself; the stepwise one moved it already.
    const args = (lists: number, verify: boolean) => [
      this.epochTtl,
      this.fenceMs,
      id,
      verify ? counter.length : 0,
      lists,
      verify ? 1 : 0,
    ]
    if (!this.calls.client.isCluster) {
      let lists: string[] = []
      for (let attempt = 1; ; attempt++) {
        const reply = await this.calls.run<unknown[]>('invalidate entity', {
          script: INVALIDATE_ENTITY,
          keys: [
            k.value,
            k.members,
            k.epoch,
            ...counter,
            ...lists.flatMap((l) => [l, listKeysAt(l).tomb(id)]),
          ],
          args: args(lists.length, true),
        })
        if (Number(reply[0]) === 1) {
          return { deleted: Number(reply[1]), removed: Number(reply[2]), lists }
        }
        lists = reply.slice(1).map(String)
        if (attempt >= MAX_ATOMIC_ATTEMPTS) break
      }
      // Memberships changing faster than we can name them: finish step by step (still race-safe).
    }
    if (counter.length > 0) {
      // Before the row goes: a rebuild that read the counter earlier must see it moved.
      await this.calls.run('invalidate entity', {
        script: BUMP_COUNTER,
        keys: [counter[0]!],
        args: [this.epochTtl],
      })
    }
    const reply = await this.calls.run<unknown[]>('invalidate entity', {
      script: INVALIDATE_ENTITY,
      keys: [k.value, k.members, k.epoch],
      args: args(0, false),
    })
    const epoch = Number(reply[3])
    const lists = reply.slice(4).map(String)
    const removed = await this.calls.runMany<number>(
      'invalidate entity',
      lists.map((listKey) => ({
        script: REMOVE_INVALIDATED,
        keys: [listKey, listKeysAt(listKey).tomb(id)],
        args: [id, epoch, this.fenceMs],
      })),
    )
    return {
      deleted: Number(reply[1]),
      removed: removed.reduce((sum, n) => sum + Number(n), 0),
      lists,
    }
  }

  // ---------------------------------------------------------------- indexed lists

  /** Adds (or re-scores) a row in a cached list; writes the row too. */
  async addToList(
    list: CheckedIndexedList,
    params: string,
    id: string,
    row: unknown,
    json: string,
    score: number,
  ): Promise<'added' | 'invalidated' | 'not cached'> {
    const lk = this.keys.indexedList(list.name, params)
    const ek = this.keys.entity(list.entity.type, id)
    let epoch: number
    if (list.trackMembership) {
      epoch = Number(
        await this.calls.run('add to list', {
          script: REGISTER_MEMBER,
          keys: [ek.members, ek.epoch, ek.value],
          args: [lk.list, list.ttl + this.fenceMs, json, list.entity.ttl, this.epochTtl],
        }),
      )
    } else {
      await this.writeRow(list.entity, id, json, row, false)
      epoch = Number.MAX_SAFE_INTEGER
    }
    const reply = await this.calls.run<number>('add to list', {
      script: LIST_ADD,
      keys: [lk.list, lk.loaded, lk.epoch, lk.tomb(id)],
      args: [id, score, epoch, list.maxSize, this.epochTtl],
    })
    return reply === 1 ? 'added' : reply === 0 ? 'invalidated' : 'not cached'
  }

  async removeFromList(list: CheckedIndexedList, params: string, id: string): Promise<boolean> {
    const lk = this.keys.indexedList(list.name, params)
    const reply = await this.calls.run<number>('remove from list', {
      script: LIST_CHANGE,
      keys: [lk.list, lk.epoch],
      args: [id, this.epochTtl, ''],
    })
    return Number(reply) === 1
  }

  async readPage(list: CheckedIndexedList, params: string, first: number, last: number): Promise<PageRead> {
    const lk = this.keys.indexedList(list.name, params)
    const losses = this.calls.losses
    const reply = await this.calls.run<unknown[]>('read list page', {
      script: READ_PAGE,
      keys: [lk.list, lk.loaded, lk.epoch],
      args: [first, last],
    })
    const total = Number(reply[0])
    const epoch = Number(reply[1])
    if (total < 0) return { cached: false, epoch, losses }
    return { cached: true, epoch, losses, total, ids: (reply[2] as unknown[]).map(String) }
  }

  /** The type's invalidation counter (rebuilds read it before loading and again before writing). */
  async readCounter(entity: CheckedEntity): Promise<number> {
    const value = await this.calls.command('read counter', (client) =>
      client.get(this.keys.typeCounter(entity.type)),
    )
    return Number(value ?? 0)
  }

  /**
   * Writes a rebuilt list unless something overtook the rebuild: the list changed since `listEpoch`, a
   * row of the type was invalidated since `counter`, or the client lost a connection since `losses`
   * (counted before both were read: a restart may have taken the epochs). Then nothing is written. Rows
   * invalidated or rewritten after their epoch was read are not written: `leftOut` names the ids kept out
   * of the list (invalidated), `refused` the rows not written (invalidated or rewritten), so the caller
   * does not answer with them either.
   */
  async writeRebuilt(
    list: CheckedIndexedList,
    params: string,
    rows: readonly RebuiltRow[],
    listEpoch: number,
    counter: number,
    losses: number,
  ): Promise<{ written: boolean; leftOut: ReadonlySet<string>; refused: ReadonlySet<string> }> {
    const lk = this.keys.indexedList(list.name, params)
    const entity = list.entity
    let epochs: number[]
    if (list.trackMembership) {
      epochs = (
        await this.calls.runMany<number>(
          'rebuild list',
          rows.map(({ id }) => {
            const ek = this.keys.entity(entity.type, id)
            return {
              script: REGISTER_MEMBER,
              keys: [ek.members, ek.epoch, ek.value],
              args: [lk.list, list.ttl + this.fenceMs, '', 0, 0],
            }
          }),
        )
      ).map(Number)
    } else {
      epochs = (
        await this.readRows(
          entity,
          rows.map((row) => row.id),
        )
      ).map((row) => row.epoch)
    }
    if ((await this.readCounter(entity)) !== counter || this.calls.losses !== losses) {
      return { written: false, leftOut: new Set(), refused: new Set() }
    }
    const [filled, rowsWritten] = await Promise.all([
      this.calls.run<unknown[]>('rebuild list', {
        script: LIST_FILL,
        keys: [lk.list, lk.loaded, lk.epoch, ...rows.map((row) => lk.tomb(row.id))],
        args: [list.ttl, listEpoch, ...rows.flatMap((row, i) => [row.id, row.score, epochs[i]!])],
      }),
      this.writeRowsFenced(
        entity,
        rows.map((row, i) => ({ id: row.id, json: row.json, epoch: epochs[i]!, losses })),
      ),
    ])
    const refused = new Set(rows.filter((_, i) => !rowsWritten[i]).map((row) => row.id))
    return { written: Number(filled[0]) >= 0, leftOut: new Set(filled.slice(1).map(String)), refused }
  }

  async deleteIndexedList(list: CheckedIndexedList, params: string): Promise<number> {
    const lk = this.keys.indexedList(list.name, params)
    const reply = await this.calls.run<number>('delete list', {
      script: LIST_DELETE,
      keys: [lk.list, lk.loaded, lk.epoch],
      args: [this.epochTtl],
    })
    return Math.min(1, Number(reply))
  }

  // ---------------------------------------------------------------- plain lists

  async readPlain(name: string, params: string): Promise<StoredRow> {
    const k = this.keys.plainList(name, params)
    const losses = this.calls.losses
    const [json, epoch] = await this.calls.run<[string | null, number]>('read list', {
      script: READ_FENCED,
      keys: [k.value, k.epoch],
      args: [],
    })
    return { json: json ?? undefined, epoch: Number(epoch), losses }
  }

  /** Stores a plain list; with `fence` (a load's write-back), only if nothing moved since its read. */
  async writePlain(
    name: string,
    params: string,
    json: string,
    ttl: number,
    fence?: ReadFence,
  ): Promise<boolean> {
    const k = this.keys.plainList(name, params)
    if (fence === undefined) {
      await this.calls.run('write list', {
        script: WRITE_AND_BUMP,
        keys: [k.value, k.epoch],
        args: [json, ttl, this.epochTtl],
      })
      return true
    }
    if (fence.losses !== this.calls.losses) return false
    const reply = await this.calls.run<number>('write list', {
      script: WRITE_FENCED,
      keys: [k.value, k.epoch],
      args: [json, ttl, fence.epoch],
    })
    return Number(reply) === 1
  }

  async deletePlain(name: string, params: string): Promise<number> {
    const k = this.keys.plainList(name, params)
    return Number(
      await this.calls.run('delete list', {
        script: DELETE_FENCED,
        keys: [k.value, k.epoch],
        args: [this.epochTtl],
      }),
    )
  }
}
