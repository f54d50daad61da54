/**
 * docs/grafana/layercache-dashboard.json against Grafana's own schema, and against the code: the
 * dashboard is type-checked (TypeScript compiler API) as a literal of @grafana/schema's `Dashboard`, and
 * each panel's options and custom field config as literals of its panel plugin's generated types; every
 * PromQL expression may only select series the exporter defines, and group by labels those series have.
 */
import { readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'
import { definedSeriesNames, groupingLabels, labelsBySeries, selectedMetrics } from './support/promql'

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '../../..')
const path = join(root, 'docs/grafana/layercache-dashboard.json')
const text = readFileSync(path, 'utf8')

interface PanelJson {
  readonly id: number
  readonly type: string
  readonly title: string
  readonly description?: string
  readonly gridPos: { x: number; y: number; w: number; h: number }
  readonly datasource?: { type: string; uid: string }
  readonly targets?: ReadonlyArray<{ expr: string; refId: string; datasource?: { uid: string } }>
  readonly options?: unknown
  readonly fieldConfig?: { defaults: { custom?: unknown } }
}
const dashboard = JSON.parse(text) as {
  panels: PanelJson[]
  templating: { list: Array<{ name: string; type: string; query?: unknown; datasource?: { uid: string } }> }
}
const panels = dashboard.panels.filter((panel) => panel.type !== 'row')
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a JavaScript template
const DATASOURCE = '${datasource}'

/** Where each panel type's generated option types live in @grafana/schema. */
const PANEL_TYPES: Record<string, { module: string; fieldConfig: boolean }> = {
  timeseries: { module: 'timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen', fieldConfig: true },
  stat: { module: 'stat/panelcfg/x/StatPanelCfg_types.gen', fieldConfig: false },
  'state-timeline': { module: 'statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen', fieldConfig: true },
}

/**
 * A TypeScript module that type-checks `json` as a dashboard. String enums (`'absolute'` for
 * `ThresholdsMode.Absolute`) are nominal in TypeScript, and JSON only has their values: `Literal<T>`
 * turns every string enum in T into the union of its values, and leaves everything else as it is.
 */
function checkModule(json: { panels: PanelJson[] }): string {
  const lines = [
    "import type { Dashboard } from '@grafana/schema'",
    ...Object.entries(PANEL_TYPES).map(
      ([type, { module, fieldConfig }], i) =>
        `import type { Options as Options${i}${fieldConfig ? `, FieldConfig as Field${i}` : ''} } ` +
        `from '@grafana/schema/dist/esm/raw/composable/${module}' // ${type}`,
    ),
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a TypeScript template literal type, in generated code
    'type Literal<T> = T extends string ? `${T}` : T extends readonly (infer U)[] ? Literal<U>[] : T extends object ? { [K in keyof T]: Literal<T[K]> } : T',
    `export const dashboard = ${JSON.stringify(json)} satisfies Literal<Dashboard>`,
  ]
  json.panels.forEach((panel, n) => {
    if (panel.type === 'row') return
    const at = Object.keys(PANEL_TYPES).indexOf(panel.type)
    lines.push(`export const options${n} = ${JSON.stringify(panel.options)} satisfies Literal<Options${at}>`)
    if (PANEL_TYPES[panel.type]!.fieldConfig && panel.fieldConfig?.defaults.custom !== undefined) {
      lines.push(
        `export const custom${n} = ${JSON.stringify(panel.fieldConfig.defaults.custom)} satisfies Literal<Partial<Field${at}>>`,
      )
    }
  })
  return `${lines.join('\n')}\n`
}

/** Type-checks virtual files (placed in this package, so @grafana/schema resolves) and returns their errors. */
function typeCheck(files: Record<string, string>): Record<string, string[]> {
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    skipLibCheck: true,
    types: [],
  }
  const virtual = new Map(Object.entries(files).map(([name, source]) => [join(here, name), source]))
  const host = ts.createCompilerHost(options)
  const readFile = host.readFile.bind(host)
  const getSourceFile = host.getSourceFile.bind(host)
  host.fileExists = (file) => virtual.has(file) || ts.sys.fileExists(file)
  host.readFile = (file) => virtual.get(file) ?? readFile(file)
  host.getSourceFile = (file, language, onError, fresh) => {
    const source = virtual.get(file)
    return source === undefined
      ? getSourceFile(file, language, onError, fresh)
      : ts.createSourceFile(file, source, language)
  }
  const program = ts.createProgram([...virtual.keys()], options, host)
  const errors: Record<string, string[]> = {}
  for (const [file] of virtual) {
    const source = program.getSourceFile(file)!
    errors[file.slice(here.length + 1)] = [
      ...program.getSyntacticDiagnostics(source),
      ...program.getSemanticDiagnostics(source),
    ].map((diagnostic) => ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n').slice(0, 400))
  }
  return errors
}

describe('Grafana dashboard', () => {
  it("type-checks against @grafana/schema's Dashboard and each panel plugin's options", () => {
    const broken = structuredClone(dashboard) as { panels: PanelJson[]; graphTooltip?: unknown }
    broken.graphTooltip = 'shared'
    const timeseries = broken.panels.find((panel) => panel.type === 'timeseries')!
    ;(timeseries.options as { legend: { placement: string } }).legend.placement = 'middle'
    const errors = typeCheck({
      '__dashboard.check.ts': checkModule(dashboard),
      '__dashboard-broken.check.ts': checkModule(broken),
    })
    expect(errors['__dashboard.check.ts']).toEqual([])
    // The check bites: a wrong top-level field and a wrong panel option are both reported.
    const reported = errors['__dashboard-broken.check.ts']!.join('\n')
    expect(reported).toMatch(/'string' is not assignable to type 'DashboardCursorSync/)
    expect(reported).toMatch(/'"middle"' is not assignable to type 'LegendPlacement'/)
  }, 120_000)

  it('only selects series the exporter defines, grouped by labels they have', () => {
    const defined = definedSeriesNames()
    const labels = labelsBySeries()
    const expressions = panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr))
    for (const variable of dashboard.templating.list) {
      if (variable.type === 'query') expressions.push((variable.query as { query: string }).query)
    }
    expect(expressions.length).toBeGreaterThan(30)
    const used = new Set<string>()
    for (const expr of expressions) {
      const selected = selectedMetrics(expr.replace(/label_values\((\w+),\s*(\w+)\)/, '$1{$2=""}'))
      expect(selected.length, expr).toBeGreaterThan(0)
      const allowed = new Set(['instance', 'job'])
      for (const { name, labels: matched } of selected) {
        expect(defined, `${name} in ${expr}`).toContain(name)
        used.add(name)
        for (const label of labels.get(name)!) allowed.add(label)
        for (const label of matched) expect(labels.get(name), `${label} on ${name}`).toContain(label)
      }
      for (const label of groupingLabels(expr))
        expect(allowed, `grouping by ${label} in ${expr}`).toContain(label)
    }
    // Every histogram and every metric an on-call engineer needs is on the dashboard.
    for (const name of [
      'layercache_hits_total',
      'layercache_layer_hits_total',
      'layercache_operation_duration_seconds_bucket',
      'layercache_loader_duration_seconds_bucket',
      'layercache_loader_errors_total',
      'layercache_stale_served_total',
      'layercache_coalesced_total',
      'layercache_fenced_writes_total',
      'layercache_bus_lag_seconds_bucket',
      'layercache_bus_unverified_flushes_total',
      'layercache_circuit_state',
      'layercache_write_behind_queue_depth',
      'layercache_write_behind_retries_total',
      'layercache_write_behind_dead_letters_total',
      'layercache_key_index_size',
    ]) {
      expect(used, name).toContain(name)
    }
  })

  it('has the datasource and cache variables, and every panel uses them, is described and placed', () => {
    const variables = dashboard.templating.list
    expect(variables.find((variable) => variable.name === 'datasource')).toMatchObject({
      type: 'datasource',
      query: 'prometheus',
    })
    expect(variables.find((variable) => variable.name === 'cache')).toMatchObject({
      type: 'query',
      datasource: { uid: DATASOURCE },
    })
    const ids = dashboard.panels.map((panel) => panel.id)
    expect(new Set(ids).size).toBe(ids.length)
    const cells = new Set<string>()
    for (const panel of dashboard.panels) {
      expect(panel.gridPos.x + panel.gridPos.w, panel.title).toBeLessThanOrEqual(24)
      for (let x = panel.gridPos.x; x < panel.gridPos.x + panel.gridPos.w; x++) {
        for (let y = panel.gridPos.y; y < panel.gridPos.y + panel.gridPos.h; y++) {
          expect(cells.has(`${x},${y}`), `${panel.title} overlaps another panel`).toBe(false)
          cells.add(`${x},${y}`)
        }
      }
    }
    for (const panel of panels) {
      expect(Object.keys(PANEL_TYPES), panel.title).toContain(panel.type)
      expect(panel.description?.length ?? 0, panel.title).toBeGreaterThan(20)
      expect(panel.datasource?.uid, panel.title).toBe(DATASOURCE)
      for (const target of panel.targets ?? []) {
        expect(target.datasource?.uid).toBe(DATASOURCE)
        const filtersByQueue = target.expr.includes('write_behind')
        expect(target.expr, panel.title).toContain(filtersByQueue ? 'queue=~"$queue"' : 'cache=~"$cache"')
      }
    }
  })
})
