import { mkdir, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { percentile } from './measure'
import type { PeerRow } from './peers-report'

/** A DESIGN.md budget on the ratio ours / baseline of one row's metric. */
export interface Budget {
  /** As DESIGN.md words it, e.g. '≤ 1.5×'. */
  readonly text: string
  readonly maxRatio?: number
  readonly minRatio?: number
}

export interface Row {
  readonly scenario: string
  readonly metric: string
  readonly ours: string
  readonly baseline: string
  /**
   * ours / baseline of the metric (for times lower is better, for throughput higher is better); NaN when
   * the row has no baseline to compare with (shown empty).
   */
  readonly ratio: number
  /** Smallest and largest paired per-round ratio, when the metric has one value per round. */
  readonly roundRange?: readonly [number, number] | undefined
  readonly budget?: Budget | undefined
}

export interface ScenarioResult {
  readonly rows: readonly Row[]
  /** How the scenario was measured (one line each), for the report header. */
  readonly method: readonly string[]
  /** Peer-library comparison rows (results/peers.md), from the peer scenarios only. */
  readonly peerRows?: readonly PeerRow[]
  /**
   * Method lines for the budget report (latest.md) from a peer scenario that also returns budget rows
   * (`method` then goes to peers.md).
   */
  readonly ownMethod?: readonly string[]
}

export type Verdict = 'MET' | 'MISSED' | 'info'

export function verdict(row: Row): Verdict {
  const budget = row.budget
  if (budget === undefined) return 'info'
  if (budget.maxRatio !== undefined && !(row.ratio <= budget.maxRatio)) return 'MISSED'
  if (budget.minRatio !== undefined && !(row.ratio >= budget.minRatio)) return 'MISSED'
  return 'MET'
}

/** '312 ns', '4.21 µs', '1.30 ms' */
/** p50 and p99 rows comparing two sides' latencies (ns), as info rows. */
export function percentileRows(
  scenario: string,
  ours: readonly number[],
  baseline: readonly number[],
  metric: (p: number) => string,
): Row[] {
  return [50, 99].map((p) => {
    const o = percentile(ours, p)
    const b = percentile(baseline, p)
    return { scenario, metric: metric(p), ours: formatNs(o), baseline: formatNs(b), ratio: o / b }
  })
}

export function formatNs(ns: number): string {
  if (ns < 1000) return `${ns.toFixed(ns < 10 ? 2 : ns < 100 ? 1 : 0)} ns`
  if (ns < 1_000_000) return `${(ns / 1000).toFixed(ns < 10_000 ? 2 : 1)} µs`
  return `${(ns / 1_000_000).toFixed(2)} ms`
}

/** '3.21 M ops/s', '152 k ops/s' */
export function formatRate(opsPerSec: number): string {
  if (opsPerSec >= 1_000_000) return `${(opsPerSec / 1_000_000).toFixed(2)} M ops/s`
  if (opsPerSec >= 1000) return `${(opsPerSec / 1000).toFixed(1)} k ops/s`
  return `${opsPerSec.toFixed(0)} ops/s`
}

/** 1,000,000 */
export function formatCount(n: number): string {
  return n.toLocaleString('en-US')
}

export function formatRatio(ratio: number): string {
  return `${ratio.toFixed(2)}×`
}

const HEADERS = ['Scenario', 'Metric', 'Ours', 'Baseline', 'Ours/base', 'Round ratios', 'Budget', 'Verdict']

function cells(row: Row): string[] {
  const v = verdict(row)
  return [
    row.scenario,
    row.metric,
    row.ours,
    row.baseline,
    Number.isFinite(row.ratio) ? formatRatio(row.ratio) : '',
    row.roundRange ? `${formatRatio(row.roundRange[0])}–${formatRatio(row.roundRange[1])}` : '',
    row.budget?.text ?? '',
    v === 'MISSED' ? '✗ MISSED' : v === 'MET' ? '✓ met' : 'info',
  ]
}

/** Fixed-width table for the terminal. */
export function textTable(rows: readonly Row[]): string {
  const table = [HEADERS, ...rows.map(cells)]
  const widths = HEADERS.map((_, c) => Math.max(...table.map((r) => [...r[c]!].length)))
  const line = (r: string[]) =>
    r
      .map((cell, c) => cell + ' '.repeat(widths[c]! - [...cell].length))
      .join('  ')
      .trimEnd()
  const rule = widths.map((w) => '-'.repeat(w)).join('  ')
  return [line(HEADERS), rule, ...table.slice(1).map(line)].join('\n')
}

/** One row of a Markdown table, its cells' '|' escaped. */
export function markdownRow(cells: readonly string[]): string {
  return `| ${cells.map((cell) => cell.replaceAll('|', '\\|')).join(' | ')} |`
}

/** The header row of a Markdown table and the rule under it. */
export function markdownHead(headers: readonly string[]): string[] {
  return [markdownRow(headers), markdownRow(headers.map(() => '---'))]
}

export function markdownTable(rows: readonly Row[]): string {
  const out = [
    ...markdownHead(HEADERS),
    ...rows.map((row) => {
      const c = cells(row)
      if (verdict(row) === 'MISSED') c[7] = '**✗ MISSED**'
      return markdownRow(c)
    }),
  ]
  return out.join('\n')
}

export function summaryLine(rows: readonly Row[]): string {
  const budgeted = rows.filter((r) => r.budget !== undefined)
  const missed = budgeted.filter((r) => verdict(r) === 'MISSED')
  if (missed.length === 0) return `All ${budgeted.length} budgets met.`
  return (
    `${missed.length} of ${budgeted.length} budgets MISSED: ` +
    missed.map((r) => `${r.scenario} (${formatRatio(r.ratio)}, budget ${r.budget!.text})`).join('; ')
  )
}

export interface ReportHeader {
  readonly title: string
  /** 'key: value' facts about the run (Node, Redis, payload, date, …). */
  readonly facts: readonly (readonly [string, string])[]
  readonly method: readonly string[]
}

/** A report's title, facts and method, up to the heading of its results (the lines). */
export function markdownPreamble(header: ReportHeader): string[] {
  return [
    `# ${header.title}`,
    '',
    ...header.facts.map(([k, v]) => `- **${k}:** ${v}`),
    '',
    '## How it was measured',
    '',
    ...header.method.map((m) => `- ${m}`),
    '',
    '## Results',
    '',
  ]
}

export function markdownReport(header: ReportHeader, rows: readonly Row[]): string {
  return [
    ...markdownPreamble(header),
    markdownTable(rows),
    '',
    summaryLine(rows),
    '',
    'Ratios are ours / baseline of the metric in that row: for times lower is better, for throughput ' +
      'higher is better. Where a row has "Round ratios", both sides ran back to back in every round ' +
      '(A B / B A), the ratio is the median of the per-round ratios and the range is their min–max; ' +
      'the Ours and Baseline cells are the median rounds of each side. Budgets are those of DESIGN.md; ' +
      'every number above was measured in this run.',
    '',
  ].join('\n')
}

export async function writeReport(path: string, markdown: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, markdown)
}
