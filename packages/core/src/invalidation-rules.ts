import type { CacheStack, InvalidationPlan } from './cache-stack'
import { InvalidOptionError } from './errors'

/** Turns one domain event (its payload) into what it invalidates. */
export type InvalidationRule<E> = (event: E) => InvalidationPlan

/**
 * Event-driven invalidation: register, per kind of domain change, the invalidations it implies, then hand
 * every change to `handle`. Keeps "what does a price change touch?" in one place instead of scattered over
 * write paths.
 *
 * ```ts
 * const rules = new InvalidationRules<{ 'product.updated': { id: string; categoryId: string } }>(cache)
 *   .on('product.updated', (e) => ({ keys: [`product:${e.id}`], tags: [`category:${e.categoryId}`] }))
 * await rules.handle('product.updated', { id: '123', categoryId: 'electronics' })
 * ```
 *
 * A rule that throws, or returns an invalid plan, invalidates nothing (the plan is validated as a whole
 * before anything is removed).
 */
export class InvalidationRules<Events extends object = Record<string, unknown>> {
  private readonly rules = new Map<keyof Events, InvalidationRule<never>>()

  constructor(private readonly cache: CacheStack) {}

  /** Registers the rule for `type` (replacing an earlier one). */
  on<K extends keyof Events & string>(type: K, rule: InvalidationRule<Events[K]>): this {
    if (typeof type !== 'string' || type === '') {
      throw new InvalidOptionError('InvalidationRules.on: the event type must be a non-empty string')
    }
    if (typeof rule !== 'function') {
      throw new InvalidOptionError(`InvalidationRules.on("${type}"): the rule must be a function`)
    }
    this.rules.set(type, rule as InvalidationRule<never>)
    return this
  }

  /** Applies the invalidations `event` implies; returns what CacheStack.invalidate counted. */
  async handle<K extends keyof Events & string>(type: K, event: Events[K]): Promise<number> {
    const rule = this.rules.get(type) as InvalidationRule<Events[K]> | undefined
    if (rule === undefined) {
      throw new InvalidOptionError(`No invalidation rule for "${String(type)}"`)
    }
    return this.cache.invalidate(rule(event))
  }
}
