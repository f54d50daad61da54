/**
 * docs/grafana/alerts.yml: it parses as YAML into Prometheus's rule-file shape, every expression only
 * selects series the exporter defines (by labels they have), every annotation names only labels its
 * expression keeps, and the alerts an on-call engineer needs are there. (`promtool check rules` and
 * `promtool test rules docs/grafana/alerts.test.yml` check the PromQL itself, where promtool is installed.)
 */
import { readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { definedSeriesNames, groupingLabels, labelsBySeries, selectedMetrics } from './support/promql'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
const read = (file: string) => readFileSync(join(root, 'docs/grafana', file), 'utf8')

interface Rule {
  alert: string
  expr: string
  for?: string
  labels: Record<string, string>
  annotations: Record<string, string>
}

const file = parse(read('alerts.yml'), { strict: true, uniqueKeys: true }) as {
  groups: Array<{ name: string; rules: Rule[] }>
}
const rules = file.groups.flatMap((group) => group.rules)

describe('Prometheus alerting rules', () => {
  it('have the rule-file shape: named groups of alerts with an expression, severity and annotations', () => {
    expect(Object.keys(file)).toEqual(['groups'])
    expect(file.groups.map((group) => group.name)).toEqual(['layercache'])
    const names = rules.map((rule) => rule.alert)
    expect(new Set(names).size).toBe(names.length)
    for (const rule of rules) {
      expect(Object.keys(rule).sort(), rule.alert).toEqual(
        ['alert', 'annotations', 'expr', 'labels', ...(rule.for === undefined ? [] : ['for'])].sort(),
      )
      expect(rule.alert).toMatch(/^Layercache[A-Z][A-Za-z]+$/)
      if (rule.for !== undefined) expect(rule.for, rule.alert).toMatch(/^\d+[smhd]$/)
      expect(['warning', 'critical'], rule.alert).toContain(rule.labels.severity)
      expect(Object.keys(rule.annotations).sort(), rule.alert).toEqual(['description', 'summary'])
    }
  })

  it('only select series the exporter defines, and annotate with labels their expressions keep', () => {
    const defined = definedSeriesNames()
    const labels = labelsBySeries()
    const used = new Set<string>()
    for (const rule of rules) {
      const selected = selectedMetrics(rule.expr)
      expect(selected.length, rule.alert).toBeGreaterThan(0)
      const allowed = new Set(['instance', 'job'])
      for (const { name, labels: matched } of selected) {
        expect(defined, `${name} in ${rule.alert}`).toContain(name)
        used.add(name)
        for (const label of labels.get(name)!) allowed.add(label)
        for (const label of matched) expect(labels.get(name), `${label} on ${name}`).toContain(label)
      }
      const grouped = groupingLabels(rule.expr)
      for (const label of grouped) expect(allowed, `grouping by ${label} in ${rule.alert}`).toContain(label)
      const annotated = Object.values(rule.annotations).flatMap((text) =>
        [...text.matchAll(/\$labels\.([a-zA-Z_]+)/g)].map((m) => m[1]!),
      )
      for (const label of annotated) expect(grouped, `$labels.${label} in ${rule.alert}`).toContain(label)
    }
    for (const name of [
      'layercache_hits_total',
      'layercache_bus_unverified_flushes_total',
      'layercache_circuit_state',
      'layercache_write_behind_dead_letters_total',
      'layercache_key_index_size',
      'layercache_loader_errors_total',
    ]) {
      expect(used, name).toContain(name)
    }
  })

  it("promtool's unit tests of the rules feed only defined series, to rules that exist", () => {
    const tests = parse(read('alerts.test.yml'), { strict: true, uniqueKeys: true }) as {
      rule_files: string[]
      tests: Array<{
        input_series: Array<{ series: string }>
        alert_rule_test: Array<{ alertname: string }>
      }>
    }
    expect(tests.rule_files).toEqual(['alerts.yml'])
    const defined = definedSeriesNames()
    const alerts = new Set(rules.map((rule) => rule.alert))
    for (const test of tests.tests) {
      for (const input of test.input_series) expect(defined).toContain(/^[a-z_]+/.exec(input.series)![0])
      for (const check of test.alert_rule_test) expect(alerts).toContain(check.alertname)
    }
  })
})
