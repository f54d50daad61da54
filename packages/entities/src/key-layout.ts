/**
 * Where everything lives. Every Redis key of one entity shares the hash tag `{type:id}` and every key of
 * one list shares `{name:params}`, so each script touches a single slot on a Cluster; which lists hold a
 * row is data (a set in the row's slot) that the client reads and then names as keys in the next script.
 *
 *   P e:{post:42}          the row (JSON)               P l:{feed:u=7}        the list (sorted set of ids)
 *   P e:{post:42}:m        lists holding it (set)       P l:{feed:u=7}:k      "the list is cached" marker
 *   P e:{post:42}:v        invalidation epoch           P l:{feed:u=7}:v      change epoch of the list
 *   P t:{post}             invalidations of the type    P l:{feed:u=7}:t:42   tombstone: 42 removed at epoch
 *                                                       P p:{userPosts:u=7}   a plain list (JSON)
 *                                                       P p:{userPosts:u=7}:v its deletion epoch
 */
export interface EntityRedisKeys {
  readonly value: string
  readonly members: string
  readonly epoch: string
}

export interface IndexedListRedisKeys {
  readonly list: string
  readonly loaded: string
  /** Moves on every change of the list, so a rebuild that began before it is not written. */
  readonly epoch: string
  tomb(id: string): string
}

export interface FencedValueKeys {
  readonly value: string
  readonly epoch: string
}

export class KeyLayout {
  constructor(readonly prefix: string) {}

  entity(type: string, id: string): EntityRedisKeys {
    const value = `${this.prefix}e:{${type}:${id}}`
    return { value, members: `${value}:m`, epoch: `${value}:v` }
  }

  typeCounter(type: string): string {
    return `${this.prefix}t:{${type}}`
  }

  indexedList(name: string, params: string): IndexedListRedisKeys {
    return listKeysAt(`${this.prefix}l:{${name}:${params}}`)
  }

  /** Name and params of an indexed list from its key (membership sets hold those keys). */
  listOf(listKey: string): { name: string; params: string } | undefined {
    const head = `${this.prefix}l:{`
    if (!listKey.startsWith(head) || !listKey.endsWith('}')) return undefined
    const inner = listKey.slice(head.length, -1)
    const colon = inner.indexOf(':')
    return colon < 0 ? undefined : { name: inner.slice(0, colon), params: inner.slice(colon + 1) }
  }

  plainList(name: string, params: string): FencedValueKeys {
    const value = `${this.prefix}p:{${name}:${params}}`
    return { value, epoch: `${value}:v` }
  }
}

/** Keys and tags in the in-process layer (L1). An entity's tag also marks every cached page holding it. */
export const l1 = {
  entity: (type: string, id: string) => `e:${type}:${id}`,
  entityTag: (type: string, id: string) => `e:${type}:${id}`,
  plainList: (name: string, params: string) => `p:${name}:${params}`,
  listTag: (name: string, params: string) => `l:${name}:${params}`,
  page: (name: string, params: string, offset: number, limit: number) =>
    `l:${name}:${params}:${offset}:${limit}`,
}

/** Every key of an indexed list, from the list's own key. */
export function listKeysAt(list: string): IndexedListRedisKeys {
  return { list, loaded: `${list}:k`, epoch: `${list}:v`, tomb: (id) => `${list}:t:${id}` }
}
