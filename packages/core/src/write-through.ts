import { WriteFencedError } from './errors'
import type { CommitWrite, LayerWrite } from './layer'
import type { LayerErrorMode, StackState } from './stack-state'

/** Two-phase writes to every layer: prepare everywhere (bad input throws, nothing changed), then commit. */
export class WriteThrough {
  constructor(private readonly state: StackState) {}

  prepareEverywhere(writes: readonly LayerWrite[]): CommitWrite[] {
    return this.state.layers.map((layer) => layer.prepareWrites(writes))
  }

  /**
   * Phase two on every layer. On a remote failure in `throw` mode the written keys are removed from the
   * layers that took them (so this instance does not serve what Redis refused) and the error is thrown.
   */
  async commitEverywhere(
    commits: readonly CommitWrite[],
    writes: readonly LayerWrite[],
    mode: LayerErrorMode,
  ) {
    const pending: Promise<void>[] = []
    let failures: { index: number; error: unknown }[] = []
    commits.forEach((commit, i) => {
      try {
        const done = commit()
        if (done instanceof Promise)
          pending.push(done.catch((error) => void failures.push({ index: i, error })))
      } catch (error) {
        failures.push({ index: i, error })
      }
    })
    if (pending.length > 0) await Promise.all(pending)
    if (failures.length === 0) return
    const fenced = failures.filter(({ error }) => error instanceof WriteFencedError)
    if (fenced.length > 0) {
      // A layer that refuses a write wrote nothing (it checks and writes in one step); the layers that
      // took the value must not keep what an invalidation overtook.
      const keys = fenced.flatMap(({ error }) => (error as WriteFencedError).keys)
      for (const key of keys) this.state.countFenced(key)
      await this.removeQuietly(keys, new Set(fenced.map(({ index }) => index)))
      if (fenced.length === failures.length) return
    }
    failures = failures.filter(({ error }) => !(error instanceof WriteFencedError))
    if (mode === 'throw') await this.removeQuietly(writes.map((w) => w.key))
    else this.state.stats.skippedWrites += failures.length * writes.length
    const operation = writes.length === 1 ? 'set' : 'setMany'
    for (const { index, error } of failures)
      this.state.layerFailed(index, operation, writes[0]?.key, error, mode)
  }

  private async removeQuietly(keys: readonly string[], except?: ReadonlySet<number>): Promise<void> {
    await Promise.all(
      this.state.layers.map(async (layer, i) => {
        if (except?.has(i)) return
        try {
          await layer.deleteMany(keys)
        } catch {
          // Best effort: the caller is about to get the original failure.
        }
      }),
    )
  }
}
