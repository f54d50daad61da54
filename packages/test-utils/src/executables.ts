import { accessSync, constants } from 'node:fs'
import { delimiter, dirname, join } from 'node:path'

/** Resolves a command name against the current PATH, like `which`. */
export function findExecutable(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    const candidate = join(dir, name)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not here, keep looking
    }
  }
  return undefined
}

export function findRedisServer(): string | undefined {
  return findExecutable('redis-server')
}

/** Prefers the redis-cli installed next to redis-server so both come from the same Redis version. */
export function findRedisCli(): string | undefined {
  const server = findRedisServer()
  if (server !== undefined) {
    const sibling = join(dirname(server), 'redis-cli')
    try {
      accessSync(sibling, constants.X_OK)
      return sibling
    } catch {
      // fall back to PATH
    }
  }
  return findExecutable('redis-cli')
}
