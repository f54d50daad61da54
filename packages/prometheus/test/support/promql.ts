import { ALL_METRICS, prometheusName } from '@layercache/core'

/**
 * Every series name the exporter can produce: each metric's Prometheus name, and for histograms the
 * `_bucket`, `_sum` and `_count` series PromQL reads (a histogram has no series under its bare name).
 */
export function definedSeriesNames(): Set<string> {
  const names = new Set<string>()
  for (const metric of ALL_METRICS) {
    const name = prometheusName(metric)
    if (metric.kind === 'histogram')
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix)
    else names.add(name)
  }
  return names
}

/** Label names each series name may be selected or grouped by (the metric's labels; `le` for buckets). */
export function labelsBySeries(): Map<string, Set<string>> {
  const labels = new Map<string, Set<string>>()
  for (const metric of ALL_METRICS) {
    const name = prometheusName(metric)
    const own = new Set(metric.labels)
    if (metric.kind !== 'histogram') labels.set(name, own)
    else {
      labels.set(`${name}_bucket`, new Set([...own, 'le']))
      labels.set(`${name}_sum`, own)
      labels.set(`${name}_count`, own)
    }
  }
  return labels
}

const KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'and',
  'or',
  'unless',
  'bool',
  'offset',
])

/**
 * The metric names a PromQL expression selects, with the label names its selectors match on. Strings,
 * range and subquery brackets and grouping clauses are set aside first; what is left that is an
 * identifier not followed by `(` (a function or aggregation) and not a keyword is a metric name.
 */
export function selectedMetrics(expr: string): Array<{ name: string; labels: string[] }> {
  const text = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
  const found: Array<{ name: string; labels: string[] }> = []
  const identifier = /[a-zA-Z_:][a-zA-Z0-9_:]*/g
  let match: RegExpExecArray | null
  let depth = 0
  for (let at = 0; at < text.length; ) {
    const char = text[at]!
    if (char === '{') depth++
    if (char === '}') depth--
    identifier.lastIndex = at
    match = identifier.exec(text)
    if (
      match === null ||
      match.index !== at ||
      depth > 0 ||
      /[0-9.]/.test(text[at - 1] ?? '') ||
      text[at - 1] === '$'
    ) {
      at++
      continue
    }
    const name = match[0]
    at += name.length
    const rest = text.slice(at).trimStart()
    if (rest.startsWith('(') || KEYWORDS.has(name)) continue
    const selector = rest.startsWith('{') ? rest.slice(1, rest.indexOf('}')) : ''
    const labels = [...selector.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((m) => m[1]!)
    found.push({ name, labels })
  }
  return found
}

/** The label names an expression groups by (`by (...)`, `without (...)`, `on (...)`, `ignoring (...)`). */
export function groupingLabels(expr: string): string[] {
  return [...expr.matchAll(/\b(?:by|without|on|ignoring)\s*\(([^)]*)\)/g)].flatMap((m) =>
    m[1]!
      .split(',')
      .map((label) => label.trim())
      .filter((label) => label !== ''),
  )
}
