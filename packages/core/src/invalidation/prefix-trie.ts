import { type BoundOptions, readBoundOptions } from './bound-options'

/**
 * A radix-tree node. Children are keyed by the first code unit of their label; every node but the
 * root is either a key (`terminal`) or a branch with at least two children, which keeps the tree
 * within 2 × keys nodes and a prefix walk proportional to the prefix length.
 */
interface TrieNode {
  label: string
  terminal: boolean
  children: Map<number, TrieNode> | undefined
}

function newNode(label: string, terminal: boolean): TrieNode {
  return { label, terminal, children: undefined }
}

function commonPrefixLength(label: string, key: string, from: number): number {
  const max = Math.min(label.length, key.length - from)
  let i = 0
  while (i < max && label.charCodeAt(i) === key.charCodeAt(from + i)) i++
  return i
}

/** Where a prefix ends: `node` roots the subtree of every key starting with the prefix. */
interface PrefixLocation {
  node: TrieNode
  parent: TrieNode | undefined
  /** The keys' common start: the prefix, extended to the end of `node`'s label. */
  path: string
}

export type PrefixTrieOptions = BoundOptions

/**
 * A set of string keys answering "which keys start with P" in time proportional to the length of P
 * plus the size of the answer, never to the number of keys. Bounded: adding a key beyond `maxKeys`
 * drops the oldest-added key and reports it through `onEvict`.
 *
 * Own radix tree rather than mnemonist's TrieMap: that one spends an object per character, cannot
 * drop a subtree, reserves `\u0000` as its end marker and is not importable by subpath under ESM.
 */
export class PrefixTrie {
  private root = newNode('', false)
  // Insertion order doubles as the eviction order.
  private readonly order = new Set<string>()
  private readonly maxKeys: number
  private readonly onEvict: ((key: string) => void) | undefined

  constructor(options?: PrefixTrieOptions) {
    const bound = readBoundOptions(options, 'PrefixTrie')
    this.maxKeys = bound.maxKeys
    this.onEvict = bound.onEvict
  }

  get size(): number {
    return this.order.size
  }

  has(key: string): boolean {
    return this.order.has(key)
  }

  /** Adds `key`; adding a present key only refreshes its place in the eviction order. */
  add(key: string): this {
    if (this.order.has(key)) {
      this.order.delete(key)
      this.order.add(key)
      return this
    }
    this.insert(key)
    this.order.add(key)
    while (this.order.size > this.maxKeys) {
      const oldest = this.order.values().next().value as string
      this.delete(oldest)
      this.onEvict?.(oldest)
    }
    return this
  }

  delete(key: string): boolean {
    if (!this.order.delete(key)) return false
    const path: TrieNode[] = [this.root]
    let node = this.root
    let at = 0
    while (at < key.length) {
      // The key is present, so every step of its path exists.
      node = node.children!.get(key.charCodeAt(at))!
      path.push(node)
      at += node.label.length
    }
    node.terminal = false
    this.compact(path)
    return true
  }

  /** Every key starting with `prefix` (`''`: all keys), in no particular order. */
  keysWithPrefix(prefix: string): string[] {
    const location = this.locate(prefix)
    return location === undefined ? [] : collect(location.node, location.path)
  }

  /** Removes every key starting with `prefix` and returns them. */
  deletePrefix(prefix: string): string[] {
    const location = this.locate(prefix)
    if (location === undefined) return []
    const removed = collect(location.node, location.path)
    if (location.parent === undefined) {
      this.clear()
      return removed
    }
    for (const key of removed) this.order.delete(key)
    const { node, parent } = location
    parent.children!.delete(node.label.charCodeAt(0))
    if (parent.children!.size === 0) parent.children = undefined
    if (parent !== this.root && !parent.terminal) mergeWithOnlyChild(parent)
    return removed
  }

  clear(): void {
    this.root = newNode('', false)
    this.order.clear()
  }

  private insert(key: string): void {
    let node = this.root
    let at = 0
    while (at < key.length) {
      const code = key.charCodeAt(at)
      const child = node.children?.get(code)
      if (child === undefined) {
        node.children ??= new Map()
        node.children.set(code, newNode(key.slice(at), true))
        return
      }
      const common = commonPrefixLength(child.label, key, at)
      if (common < child.label.length) {
        const branch = newNode(child.label.slice(0, common), false)
        child.label = child.label.slice(common)
        branch.children = new Map([[child.label.charCodeAt(0), child]])
        node.children!.set(code, branch)
        at += common
        if (at === key.length) branch.terminal = true
        else branch.children.set(key.charCodeAt(at), newNode(key.slice(at), true))
        return
      }
      node = child
      at += common
    }
    node.terminal = true
  }

  private locate(prefix: string): PrefixLocation | undefined {
    let node = this.root
    let at = 0
    while (at < prefix.length) {
      const child = node.children?.get(prefix.charCodeAt(at))
      if (child === undefined) return undefined
      const common = commonPrefixLength(child.label, prefix, at)
      // The prefix may end inside the child's label: the whole subtree still matches.
      if (at + common === prefix.length) {
        return { node: child, parent: node, path: prefix.slice(0, at) + child.label }
      }
      if (common < child.label.length) return undefined
      node = child
      at += common
    }
    return { node: this.root, parent: undefined, path: '' }
  }

  /** Restores the radix invariant on `path` (root first) after its last node stopped being a key. */
  private compact(path: TrieNode[]): void {
    const node = path[path.length - 1]!
    const parent = path[path.length - 2]
    if (node === this.root || parent === undefined) return
    if (node.children === undefined) {
      parent.children!.delete(node.label.charCodeAt(0))
      if (parent.children!.size === 0) parent.children = undefined
      if (parent !== this.root && !parent.terminal) mergeWithOnlyChild(parent)
    } else {
      mergeWithOnlyChild(node)
    }
  }
}

/** Folds a non-key node with a single child into that child, so branches always fork. */
function mergeWithOnlyChild(node: TrieNode): void {
  if (node.children?.size !== 1) return
  const child = node.children.values().next().value as TrieNode
  node.label += child.label
  node.terminal = child.terminal
  node.children = child.children
}

function collect(start: TrieNode, startPath: string): string[] {
  const keys: string[] = []
  const nodes: TrieNode[] = [start]
  const paths: string[] = [startPath]
  while (nodes.length > 0) {
    const node = nodes.pop()!
    const path = paths.pop()!
    if (node.terminal) keys.push(path)
    if (node.children === undefined) continue
    for (const child of node.children.values()) {
      nodes.push(child)
      paths.push(path + child.label)
    }
  }
  return keys
}
