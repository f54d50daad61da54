#!/usr/bin/env node
// Fails when the relative imports between source files of a package form a cycle (type-only imports
// included: a cycle of types still ties the files' design together). Prints each cycle found.
//   node scripts/check-import-cycles.mjs [package-dir ...]   (default: every packages/*/src)
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'

const root = resolve(dirname(new URL(import.meta.url).pathname), '..')
const given = process.argv.slice(2)
const sources = given.length > 0 ? given.map((dir) => resolve(dir)) : packageSources()

function packageSources() {
  const packages = join(root, 'packages')
  return readdirSync(packages)
    .map((name) => join(packages, name, 'src'))
    .filter((dir) => statSync(dir, { throwIfNoEntry: false })?.isDirectory())
}

function filesUnder(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return filesUnder(path)
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : []
  })
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+['"](\.{1,2}\/[^'"]+)['"]/g

function resolveImport(from, specifier) {
  const base = resolve(dirname(from), specifier.replace(/\.js$/, ''))
  for (const candidate of [`${base}.ts`, join(base, 'index.ts')]) {
    if (statSync(candidate, { throwIfNoEntry: false })?.isFile()) return candidate
  }
  return undefined
}

let cycles = 0
for (const dir of sources) {
  const files = filesUnder(dir)
  const edges = new Map(files.map((file) => [file, new Set()]))
  for (const file of files) {
    for (const match of readFileSync(file, 'utf8').matchAll(IMPORT)) {
      const target = resolveImport(file, match[1])
      if (target !== undefined && edges.has(target)) edges.get(file).add(target)
    }
  }
  // Tarjan's strongly connected components: every component of more than one file is a cycle.
  let index = 0
  const order = new Map()
  const low = new Map()
  const stack = []
  const onStack = new Set()
  const visit = (file) => {
    order.set(file, index)
    low.set(file, index++)
    stack.push(file)
    onStack.add(file)
    for (const next of edges.get(file)) {
      if (!order.has(next)) {
        visit(next)
        low.set(file, Math.min(low.get(file), low.get(next)))
      } else if (onStack.has(next)) low.set(file, Math.min(low.get(file), order.get(next)))
    }
    if (low.get(file) === order.get(file)) {
      const component = []
      let member
      do {
        member = stack.pop()
        onStack.delete(member)
        component.push(member)
      } while (member !== file)
      if (component.length > 1) {
        cycles++
        console.error(
          `import cycle: ${component
            .map((f) => relative(root, f))
            .sort()
            .join(', ')}`,
        )
      }
    }
  }
  for (const file of files) if (!order.has(file)) visit(file)
}
if (cycles > 0) {
  console.error(
    `${cycles} import cycle(s): break them (see STYLE: each part declares the interface it uses).`,
  )
  process.exit(1)
}
console.log(`no import cycles in ${sources.length} package(s)`)
