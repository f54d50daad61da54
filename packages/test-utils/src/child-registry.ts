import { type ChildProcess, spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import type { Socket } from 'node:net'

// No redis-server may outlive the test process, yet vitest ends fork workers with SIGTERM (no 'exit'
// event) and thread workers with terminate(). So besides an 'exit' hook, a watchdog process holds the
// read end of a pipe from us; when we die in any way the pipe closes and it kills whatever is still listed.
const WATCHDOG_SCRIPT = `
const pids = new Set()
const dirs = new Set()
let pending = ''
process.on('SIGINT', () => {})
process.stdin.setEncoding('utf8')
process.stdin.on('data', (chunk) => {
  pending += chunk
  let end
  while ((end = pending.indexOf('\\n')) !== -1) {
    const line = pending.slice(0, end)
    pending = pending.slice(end + 1)
    const set = line[1] === 'p' ? pids : dirs
    const value = line.slice(3)
    if (line[0] === '+') set.add(value)
    else set.delete(value)
  }
})
process.stdin.on('end', () => {
  for (const pid of pids) try { process.kill(Number(pid), 'SIGKILL') } catch {}
  for (const dir of dirs) try { require('node:fs').rmSync(dir, { recursive: true, force: true }) } catch {}
  process.exit(0)
})
`

const liveChildren = new Set<ChildProcess>()
const liveDirs = new Set<string>()
let watchdog: ChildProcess | undefined
let exitHookInstalled = false

function killSurvivors(): void {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
  for (const dir of liveDirs) {
    try {
      rmSync(dir, { recursive: true, force: true })
    } catch {
      // best effort
    }
  }
}

function tellWatchdog(line: string): void {
  if (!watchdog) {
    watchdog = spawn(process.execPath, ['-e', WATCHDOG_SCRIPT], { stdio: ['pipe', 'ignore', 'ignore'] })
    watchdog.on('error', () => {})
    watchdog.stdin?.on('error', () => {})
    watchdog.unref()
    ;(watchdog.stdin as Socket | null)?.unref()
  }
  watchdog.stdin?.write(`${line}\n`)
}

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', killSurvivors)
}

export function trackChild(child: ChildProcess): void {
  const { pid } = child
  if (pid === undefined) return
  installExitHook()
  liveChildren.add(child)
  tellWatchdog(`+p ${pid}`)
  child.once('exit', () => {
    liveChildren.delete(child)
    tellWatchdog(`-p ${pid}`)
  })
}

export function trackDir(dir: string): void {
  installExitHook()
  liveDirs.add(dir)
  tellWatchdog(`+d ${dir}`)
}

export function untrackDir(dir: string): void {
  liveDirs.delete(dir)
  tellWatchdog(`-d ${dir}`)
}
