/** docs/observability.md lists every metric the exporters produce, under its exact name. */
import { readFileSync } from 'node:fs'
import { ALL_METRICS, TRACING_CHANNELS } from '@layercache/core'
import { describe, expect, it } from 'vitest'

const doc = readFileSync(new URL('../../../docs/observability.md', import.meta.url), 'utf8')

describe('docs/observability.md', () => {
  it('names every metric and every tracing channel', () => {
    const missing = ALL_METRICS.map((metric) => metric.name).filter((name) => !doc.includes(`\`${name}\``))
    expect(missing).toEqual([])
    for (const name of Object.values(TRACING_CHANNELS)) {
      expect(doc).toContain(name.replace('layercache:', ''))
    }
  })
})
