import type { Registry } from 'prom-client'

/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), as the Prometheus server
 * reads a scrape: `# HELP` and `# TYPE` before a family's samples, names and label names by the format's
 * grammar, label values with their escapes, numeric values; a sample must belong to the family declared
 * above it (histograms: `_bucket` with `le`, `_sum`, `_count`), and a histogram's buckets must be
 * cumulative and end in `+Inf` equal to its `_count`. Anything else throws, naming the line.
 */
export interface Series {
  readonly labels: Readonly<Record<string, string>>
  /** Counter or gauge value; a histogram's `_count`. */
  readonly value: number
  /** Histograms: `le` bound → cumulative count, and the `_sum`. */
  readonly buckets?: ReadonlyMap<number, number>
  readonly sum?: number
}

export interface Family {
  readonly name: string
  readonly help: string
  readonly type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped'
  readonly series: readonly Series[]
}

export interface Scrape {
  readonly text: string
  readonly families: readonly Family[]
  family(name: string): Family | undefined
  /** The sum of the values (counters, gauges) or counts (histograms) of the series matching `labels`. */
  sum(name: string, labels?: Record<string, string>): number
  /** How many series of `name` match `labels`. */
  series(name: string, labels?: Record<string, string>): number
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const TYPES = ['counter', 'gauge', 'histogram', 'summary', 'untyped'] as const

export function parseScrape(text: string): Scrape {
  const families: Array<Family & { series: Series[] }> = []
  const histogramParts = new Map<string, { buckets: Map<number, number>; sum?: number; count?: number }>()
  let current: (Family & { series: Series[] }) | undefined
  let pendingHelp: { name: string; help: string } | undefined
  const lines = text.split('\n')
  for (const [index, line] of lines.entries()) {
    const fail = (why: string): never => {
      throw new Error(`scrape line ${index + 1}: ${why}: ${JSON.stringify(line)}`)
    }
    if (line === '') continue
    if (line.startsWith('# HELP ')) {
      const [, name = '', help = ''] = /^# HELP (\S+) ?(.*)$/.exec(line) ?? fail('bad HELP')
      if (!NAME.test(name)) fail('bad metric name')
      pendingHelp = { name, help }
      continue
    }
    if (line.startsWith('# TYPE ')) {
      const [, name = '', type = ''] = /^# TYPE (\S+) (\S+)$/.exec(line) ?? fail('bad TYPE')
      if (!(TYPES as readonly string[]).includes(type)) fail('unknown type')
      if (families.some((family) => family.name === name)) fail('family declared twice')
      current = {
        name,
        help: pendingHelp?.name === name ? pendingHelp.help : '',
        type: type as Family['type'],
        series: [],
      }
      families.push(current)
      continue
    }
    if (line.startsWith('#')) continue
    const match = /^([^{\s]+)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line) ?? fail('bad sample')
    const [, sampleName = '', labelText = '', valueText = ''] = match
    if (!NAME.test(sampleName)) fail('bad metric name')
    const labels = parseLabels(labelText, fail)
    const value = parseValue(valueText, fail)
    if (current === undefined) throw new Error(`scrape line ${index + 1}: sample before any TYPE`)
    if (current.type !== 'histogram') {
      if (sampleName !== current.name) fail(`sample outside its family ${current.name}`)
      current.series.push({ labels, value })
      continue
    }
    const suffix = sampleName.slice(current.name.length)
    if (!sampleName.startsWith(current.name) || !['_bucket', '_sum', '_count'].includes(suffix)) {
      fail(`sample outside its histogram ${current.name}`)
    }
    const { le, ...rest } = labels
    const key = `${current.name}${JSON.stringify(rest)}`
    const parts = histogramParts.get(key) ?? { buckets: new Map<number, number>() }
    histogramParts.set(key, parts)
    if (suffix === '_bucket') {
      if (le === undefined) fail('bucket without le')
      parts.buckets.set(parseValue(le as string, fail), value)
    } else if (le !== undefined) {
      fail('le outside a bucket')
    } else if (suffix === '_sum') {
      parts.sum = value
    } else {
      parts.count = value
      const bounds = [...parts.buckets.keys()]
      const counts = [...parts.buckets.values()]
      if (bounds.at(-1) !== Number.POSITIVE_INFINITY) fail('histogram without a +Inf bucket')
      if (counts.some((count, i) => i > 0 && count < counts[i - 1]!)) fail('buckets not cumulative')
      if (bounds.some((bound, i) => i > 0 && bound <= bounds[i - 1]!)) fail('bucket bounds not increasing')
      if (counts.at(-1) !== value) fail('+Inf bucket differs from _count')
      if (parts.sum === undefined) fail('histogram _count before its _sum')
      current.series.push({ labels: rest, value, buckets: parts.buckets, sum: parts.sum as number })
    }
  }

  const family = (name: string) => families.find((candidate) => candidate.name === name)
  const matching = (name: string, labels: Record<string, string>) =>
    (family(name)?.series ?? []).filter((series) =>
      Object.entries(labels).every(([key, value]) => series.labels[key] === value),
    )
  return {
    text,
    families,
    family,
    sum: (name, labels = {}) => matching(name, labels).reduce((total, series) => total + series.value, 0),
    series: (name, labels = {}) => matching(name, labels).length,
  }
}

function parseLabels(text: string, fail: (why: string) => never): Record<string, string> {
  const labels: Record<string, string> = {}
  let at = 0
  while (at < text.length) {
    const eq = text.indexOf('=', at)
    if (eq === -1) fail('label without a value')
    const name = text.slice(at, eq)
    if (!LABEL_NAME.test(name)) fail(`bad label name ${name}`)
    if (text[eq + 1] !== '"') fail('label value not quoted')
    let value = ''
    let i = eq + 2
    for (; i < text.length && text[i] !== '"'; i++) {
      if (text[i] === '\\') {
        const next = text[++i]
        if (next === 'n') value += '\n'
        else if (next === '\\' || next === '"') value += next
        else fail('bad escape in a label value')
      } else {
        value += text[i]
      }
    }
    if (i >= text.length) fail('unterminated label value')
    if (name in labels) fail(`label ${name} twice`)
    labels[name] = value
    at = i + 1
    if (text[at] === ',') at++
    else if (at < text.length) fail('labels not separated by commas')
  }
  return labels
}

function parseValue(text: string, fail: (why: string) => never): number {
  if (text === '+Inf') return Number.POSITIVE_INFINITY
  if (text === '-Inf') return Number.NEGATIVE_INFINITY
  if (text === 'NaN') return Number.NaN
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) fail(`bad number ${text}`)
  return Number(text)
}

export async function scrape(registry: Registry): Promise<Scrape> {
  return parseScrape(await registry.metrics())
}
