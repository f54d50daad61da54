import { type ChildProcess, fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'

export interface AppProcess {
  readonly name: string
  readonly port: number
  readonly child: ChildProcess
  /** Invalidations this app heard from the others (as the bus delivered them). */
  readonly heard: unknown[]
  get(path: string): Promise<Record<string, unknown>>
  put(path: string): Promise<Record<string, unknown>>
}

const APP = new URL('./app.ts', import.meta.url)

/**
 * Starts `count` app processes on one Redis, all with the same bus secret and key prefix (`shop`);
 * resolves once all listen.
 */
export async function startFleet(redisUrl: string, count: number, shop: string): Promise<AppProcess[]> {
  const secret = process.env.LAYERCACHE_INVALIDATION_SECRET ?? randomBytes(24).toString('base64url')
  return Promise.all(
    Array.from({ length: count }, (_, i) => {
      const name = `app-${String.fromCharCode(97 + i)}`
      const child = fork(APP, [], {
        env: {
          ...process.env,
          APP_NAME: name,
          REDIS_URL: redisUrl,
          SHOP_PREFIX: shop,
          LAYERCACHE_INVALIDATION_SECRET: secret,
        },
        execArgv: ['--conditions=@layercache/source', '--import', 'tsx'],
      })
      const heard: unknown[] = []
      return new Promise<AppProcess>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`${name} exited early (code ${code})`)))
        child.on('message', (message: { port?: number; heard?: unknown }) => {
          if (message.heard !== undefined) heard.push(message.heard)
          if (message.port === undefined) return
          const base = `http://127.0.0.1:${message.port}`
          const call = async (method: string, path: string) =>
            (await (await fetch(base + path, { method })).json()) as Record<string, unknown>
          resolve({
            name,
            port: message.port,
            child,
            heard,
            get: (path) => call('GET', path),
            put: (path) => call('PUT', path),
          })
        })
      })
    }),
  )
}

export async function stopFleet(apps: readonly AppProcess[]): Promise<void> {
  await Promise.all(
    apps.map(
      (app) =>
        new Promise<void>((resolve) => {
          app.child.removeAllListeners('exit')
          app.child.once('exit', () => resolve())
          app.child.disconnect()
          setTimeout(() => app.child.kill('SIGKILL'), 5000).unref()
        }),
    ),
  )
}
