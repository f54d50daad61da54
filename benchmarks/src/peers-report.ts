// The peer comparison's own table (results/peers.md) and bar chart (results/peers.svg).
import { pairedRatio } from './measure'
import { LIBRARIES, LIBRARY_LABEL, type Library, PEERS } from './peers'
import {
  formatNs,
  formatRatio,
  markdownHead,
  markdownPreamble,
  markdownRow,
  type ReportHeader,
} from './report'

/** One library in one scenario. */
export interface PeerRow {
  readonly scenario: string
  readonly library: Library
  /** Operations per second (what "operation" means is in the scenario's method line). */
  readonly opsPerSec?: number | undefined
  readonly p50Ns?: number | undefined
  readonly p99Ns?: number | undefined
  /** The row's figure when the scenario is not about speed alone: bytes per entry, loader calls, … */
  readonly extra?: string | undefined
  /**
   * What "ratio to best peer" compares; absent means ops/s (higher is better). Give a lower-is-better
   * figure (bytes, latency) as `{ value, higherIsBetter: false }`.
   */
  readonly compare?: { readonly value: number; readonly higherIsBetter: boolean; readonly what: string }
  /**
   * ops/s of each round, in round order, when every library of the scenario ran once in every round: the
   * ratio to the best peer is then the median of the paired per-round ratios (with their range).
   */
  readonly perRound?: readonly number[] | undefined
  /** Set when the library cannot do this at all: the reason, shown instead of numbers. */
  readonly unsupported?: string | undefined
  /** Set when the library supports this but the run failed (the error, first line): no number shown. */
  readonly failed?: string | undefined
  readonly note?: string | undefined
}

interface Compared {
  readonly value: number
  readonly higherIsBetter: boolean
  readonly what: string
}

function compared(row: PeerRow): Compared | undefined {
  if (row.unsupported !== undefined || row.failed !== undefined) return undefined
  // A non-positive figure (e.g. a heap delta lost in GC noise) is shown, never compared.
  if (row.compare !== undefined) return row.compare.value > 0 ? row.compare : undefined
  if (row.opsPerSec === undefined) return undefined
  return { value: row.opsPerSec, higherIsBetter: true, what: 'ops/s' }
}

/**
 * This row against the best peer library of its scenario, oriented so that > 1 is better than the best
 * peer (for ops/s: ours / best; for lower-is-better figures: best / ours). NaN when nothing to compare.
 */
export function ratioToBestPeer(
  row: PeerRow,
  all: readonly PeerRow[],
): { ratio: number; best?: PeerRow; range?: readonly [number, number] } {
  const mine = compared(row)
  if (mine === undefined) return { ratio: Number.NaN }
  let best: PeerRow | undefined
  let bestValue = Number.NaN
  for (const other of all) {
    if (other.scenario !== row.scenario || !PEERS.includes(other.library)) continue
    const c = compared(other)
    if (c === undefined || !Number.isFinite(c.value)) continue
    const better = Number.isNaN(bestValue) || (c.higherIsBetter ? c.value > bestValue : c.value < bestValue)
    if (better) {
      best = other
      bestValue = c.value
    }
  }
  if (best === undefined) return { ratio: Number.NaN }
  // ops/s measured round by round for both: each round's ratio on its own (both saw the same machine
  // load), then the median; the best peer is still the one with the best median round.
  const mineRounds = row.compare === undefined ? row.perRound : undefined
  const bestRounds = best.compare === undefined ? best.perRound : undefined
  if (mineRounds !== undefined && bestRounds !== undefined && mineRounds.length === bestRounds.length) {
    if (mineRounds.length > 0) {
      const paired = pairedRatio(mineRounds, bestRounds)
      return { ratio: paired.median, best, range: paired.range }
    }
  }
  return { ratio: mine.higherIsBetter ? mine.value / bestValue : bestValue / mine.value, best }
}

function formatOps(ops: number): string {
  if (ops >= 1_000_000) return `${(ops / 1_000_000).toFixed(2)} M`
  if (ops >= 10_000) return `${(ops / 1000).toFixed(0)} k`
  if (ops >= 1000) return `${(ops / 1000).toFixed(1)} k`
  return ops >= 10 ? ops.toFixed(0) : ops.toFixed(2)
}

function scenariosOf(rows: readonly PeerRow[]): string[] {
  return [...new Set(rows.map((r) => r.scenario))]
}

function sortedRows(rows: readonly PeerRow[]): PeerRow[] {
  const order = scenariosOf(rows)
  return [...rows].sort(
    (a, b) =>
      order.indexOf(a.scenario) - order.indexOf(b.scenario) ||
      LIBRARIES.indexOf(a.library) - LIBRARIES.indexOf(b.library),
  )
}

function ratioCell(row: PeerRow, rows: readonly PeerRow[]): string {
  const { ratio, best, range } = ratioToBestPeer(row, rows)
  if (!Number.isFinite(ratio) || best === undefined) return ''
  if (best === row) return '1.00× (best peer)'
  const spread = range === undefined ? '' : ` (rounds ${formatRatio(range[0])}–${formatRatio(range[1])})`
  return `${formatRatio(ratio)}${spread} vs ${best.library}`
}

const HEADERS = ['Scenario', 'Library', 'ops/s', 'p50', 'p99', 'Other', 'vs best peer (>1 = better)', 'Notes']

export function peerTable(rows: readonly PeerRow[]): string {
  const lines = markdownHead(HEADERS)
  for (const row of sortedRows(rows)) {
    const name = row.library === 'layercache' ? '**layercache**' : LIBRARY_LABEL[row.library]
    const cells =
      row.unsupported !== undefined
        ? [row.scenario, name, '—', '—', '—', `not supported: ${row.unsupported}`, '', row.note ?? '']
        : row.failed !== undefined
          ? [row.scenario, name, '—', '—', '—', `FAILED in this run: ${row.failed}`, '', row.note ?? '']
          : [
              row.scenario,
              name,
              row.opsPerSec === undefined ? '—' : formatOps(row.opsPerSec),
              row.p50Ns === undefined ? '—' : formatNs(row.p50Ns),
              row.p99Ns === undefined ? '—' : formatNs(row.p99Ns),
              row.extra ?? '',
              ratioCell(row, rows),
              row.note ?? '',
            ]
    lines.push(markdownRow(cells))
  }
  return lines.join('\n')
}

/** One line per scenario: layercache / best peer. */
export function peerSummary(rows: readonly PeerRow[]): string[] {
  const out: string[] = []
  for (const scenario of scenariosOf(rows)) {
    const ours = rows.find((r) => r.scenario === scenario && r.library === 'layercache')
    if (ours === undefined) continue
    const { ratio, best } = ratioToBestPeer(ours, rows)
    const what = compared(ours)?.what ?? 'ops/s'
    if (ours.failed !== undefined) {
      out.push(`${scenario}: layercache FAILED in this run (${ours.failed}).`)
    } else if (best === undefined || !Number.isFinite(ratio)) {
      out.push(`${scenario}: no peer library supports this (layercache measured alone).`)
    } else {
      out.push(`${scenario}: layercache ${formatRatio(ratio)} the best peer (${best.library}) on ${what}.`)
    }
  }
  return out
}

export function peerMarkdown(header: ReportHeader, rows: readonly PeerRow[]): string {
  return [
    ...markdownPreamble(header),
    peerTable(rows),
    '',
    '## layercache against the best peer, per scenario',
    '',
    ...peerSummary(rows).map((line) => `- ${line}`),
    '',
    '"vs best peer" divides by the best of bentocache, cache-manager and cacheable in that scenario ' +
      '(raw lru-cache / ioredis is a baseline, never the "best peer"), oriented so that above 1 is better: ' +
      'for ops/s it is this / best, for lower-is-better figures (bytes, latency) best / this. Where every ' +
      'library ran once in every round and the figure is ops/s, it is the median of the paired per-round ' +
      'ratios (range in brackets); the best peer is the one with the best median round. ' +
      '"not supported" means the library has no such feature; no number is shown for it. Every number ' +
      'above was measured in this run, on one shared machine: treat differences under ~20% as noise.',
    '',
  ].join('\n')
}

// ---------------------------------------------------------------------------------------------- SVG chart

const COLORS: Record<Library, string> = {
  layercache: '#d6336c',
  bentocache: '#1c7ed6',
  'cache-manager': '#37b24d',
  cacheable: '#f59f00',
  raw: '#868e96',
}

function xml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
}

/**
 * A horizontal bar per library per scenario: its "vs best peer" ratio on a log scale centred on 1×
 * (bars right of the line beat the best peer, left of it lose), clamped to 1/100×…100×.
 */
export function peerSvg(title: string, rows: readonly PeerRow[]): string {
  const labelW = 250
  const plotW = 520
  const valueW = 250
  const barH = 14
  const gap = 4
  const width = labelW + plotW + valueW
  const decades = 2
  const center = labelW + plotW / 2
  const xOf = (ratio: number) => {
    const l = Math.max(-decades, Math.min(decades, Math.log10(ratio)))
    return center + (l / decades) * (plotW / 2)
  }
  const body: string[] = []
  let y = 56
  for (const scenario of scenariosOf(rows)) {
    body.push(`<text x="8" y="${y + 12}" font-weight="bold">${xml(scenario)}</text>`)
    y += 20
    for (const row of sortedRows(rows).filter((r) => r.scenario === scenario)) {
      const { ratio } = ratioToBestPeer(row, rows)
      body.push(`<text x="24" y="${y + barH - 3}">${xml(LIBRARY_LABEL[row.library])}</text>`)
      let value: string
      if (row.unsupported !== undefined) {
        value = 'not supported'
      } else if (row.failed !== undefined) {
        value = 'failed in this run'
      } else if (!Number.isFinite(ratio)) {
        value = row.extra ?? (row.opsPerSec === undefined ? '' : `${formatOps(row.opsPerSec)} ops/s`)
      } else {
        const x = xOf(ratio)
        const x0 = Math.min(x, center)
        const w = Math.max(1, Math.abs(x - center))
        body.push(
          `<rect x="${x0.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${barH}" ` +
            `fill="${COLORS[row.library]}"/>`,
        )
        const figure =
          row.compare !== undefined
            ? (row.extra ?? '')
            : row.opsPerSec === undefined
              ? ''
              : `${formatOps(row.opsPerSec)} ops/s`
        value = `${formatRatio(ratio)}${figure === '' ? '' : `  (${figure})`}`
      }
      body.push(`<text x="${labelW + plotW + 8}" y="${y + barH - 3}">${xml(value)}</text>`)
      y += barH + gap
    }
    y += 10
  }
  const height = y + 10
  const axis: string[] = []
  for (let d = -decades; d <= decades; d++) {
    const x = center + (d / decades) * (plotW / 2)
    const label = d === 0 ? '1× best peer' : d < 0 ? `1/${10 ** -d}×` : `${10 ** d}×`
    axis.push(
      `<line x1="${x}" y1="40" x2="${x}" y2="${height - 10}" stroke="${d === 0 ? '#222' : '#ddd'}"/>`,
      `<text x="${x}" y="36" text-anchor="middle" fill="#555">${label}</text>`,
    )
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="8" y="18" font-size="14" font-weight="bold">${xml(title)}</text>`,
    ...axis,
    ...body,
    '</svg>',
    '',
  ].join('\n')
}
