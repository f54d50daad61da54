// The database of record of the history checker: every row is a version number that only grows. A value
// the cache hands out carries the version it was built from, so the checker can tell an old answer from a
// current one. Worker processes reach the same database over IPC (see worker.ts); the instances in this
// process call it directly.

/** What the workload caches for a row: the row's name and the version read from the database. */
export interface Versioned {
  readonly k: string
  readonly v: number
}

export function isVersioned(value: unknown): value is Versioned {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Versioned).k === 'string' &&
    typeof (value as Versioned).v === 'number'
  )
}

/** The calls an instance makes on the database: async, as over a network. */
export interface DatabaseClient {
  /** The current version of `row`. */
  read(row: string): Promise<number>
  /** Increments every row of `rows` and returns their new versions (in the order given). */
  bump(rows: readonly string[]): Promise<number[]>
}

/** One write to the database, for traces. */
export interface DatabaseWrite {
  readonly row: string
  readonly version: number
  readonly at: number
}

/** The database itself: versions in a Map, every write remembered. */
export class RecordDatabase implements DatabaseClient {
  readonly #versions = new Map<string, number>()
  readonly writes: DatabaseWrite[] = []

  constructor(private readonly clock: () => number) {}

  version(row: string): number {
    return this.#versions.get(row) ?? 0
  }

  /** Every row written so far with its version. */
  snapshot(): ReadonlyMap<string, number> {
    return new Map(this.#versions)
  }

  bumpNow(rows: readonly string[]): number[] {
    const at = this.clock()
    return rows.map((row) => {
      const version = this.version(row) + 1
      this.#versions.set(row, version)
      this.writes.push({ row, version, at })
      return version
    })
  }

  async read(row: string): Promise<number> {
    return this.version(row)
  }

  async bump(rows: readonly string[]): Promise<number[]> {
    return this.bumpNow(rows)
  }
}
