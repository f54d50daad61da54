import { type RedisServerHandle, startRedisServer } from '@layercache/test-utils'
import { afterEach, describe, expect, it } from 'vitest'
import { readAclFile, runAclStory, runWithoutAcl } from '../src/story'

let servers: RedisServerHandle[] = []
afterEach(async () => {
  await Promise.all(servers.map((server) => server.stop()))
  servers = []
})

async function server(): Promise<RedisServerHandle> {
  const started = await startRedisServer() // default limits: pub/sub output buffer 32 MB hard
  servers.push(started)
  return started
}

describe('examples/redis-acl', () => {
  it('without an ACL, one 40 MB publish by a client without the secret makes every instance flush', async () => {
    const outcome = await runWithoutAcl((await server()).url, () => {})
    expect(outcome.refused).toBeUndefined()
    expect(outcome.flushes.every((count) => count > 0)).toBe(true)
    expect(outcome.stillInMemory).toEqual([false, false])
  }, 60_000)

  it('with users.acl, the neighbour cannot publish on the app’s channels or write its keys; nothing flushes', async () => {
    const lines: string[] = []
    const summary = await runAclStory((await server()).url, (line) => lines.push(line))
    expect(summary.attack.refused).toMatch(/^NOPERM/)
    expect(summary.attack.flushes).toEqual([0, 0])
    expect(summary.attack.stillInMemory).toEqual([true, true])
    // The big publish, SPUBLISH, the single-flight release channel, the generation key, subscribing.
    expect(summary.neighbourRefusals).toHaveLength(5)
    for (const refusal of summary.neighbourRefusals) expect(refusal).toMatch(/^NOPERM/)
    expect(summary.neighbourOwnPublish).toBe(0)
    expect(summary.busWorks).toBe(true)
    expect(lines.join('\n')).toContain('allowed (its own channel)')
  }, 60_000)

  it('users.acl gives the app every key and channel under myapp:, the neighbour none of them', () => {
    const users = Object.fromEntries(readAclFile().map((user) => [user.name, user.rules]))
    expect(Object.keys(users).sort()).toEqual(['default', 'myapp', 'reporting'])
    expect(users.myapp).toEqual(expect.arrayContaining(['on', '~myapp:*', '&myapp:*']))
    expect(users.reporting).toEqual(expect.arrayContaining(['on', '~reporting:*', '&reporting:*']))
    expect(users.reporting!.some((rule) => rule.includes('myapp'))).toBe(false)
    expect(users.default).toEqual(['off'])
  })
})
