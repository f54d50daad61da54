import { type RedisServerHandle, startRedisServer } from '@layercache/test-utils'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execBySlotOwner } from '../src'
import { execChecked, repliesOf } from '../src/pipeline-replies'

// A Redis at maxmemory with noeviction refuses commands that need memory and runs the others: the way a
// pipeline partly fails in production.
let server: RedisServerHandle
let client: Redis

beforeAll(async () => {
  server = await startRedisServer({ args: ['--maxmemory', '8mb', '--maxmemory-policy', 'noeviction'] })
  client = new Redis(server.url)
  await client.set('kept', '1')
  await client.setrange('filler', 16 * 1024 * 1024, 'x') // past maxmemory from here on
})
afterAll(async () => {
  client.disconnect()
  await server.stop()
})

describe('pipeline replies', () => {
  it('exec() resolves with a refused command in it; execChecked throws the refusal', async () => {
    const mixed = await client.pipeline().del('kept').set('new', 'x').exec()
    expect(mixed![0]).toEqual([null, 1]) // the delete ran
    expect(String(mixed![1]![0])).toContain('OOM') // the SET was refused, and exec() resolved all the same
    await expect(execChecked(client.pipeline().exists('kept').set('new', 'x'))).rejects.toThrow(/OOM/)
    expect(await client.exists('new')).toBe(0)
  })

  it('execBySlotOwner throws a per-command error by default instead of handing it back as a reply', async () => {
    await expect(
      execBySlotOwner(client, [
        { slotKey: 'a', add: (pipe) => pipe.get('a') },
        { slotKey: 'b', add: (pipe) => pipe.set('b', 'x') },
      ]),
    ).rejects.toThrow(/OOM/)
    expect(await execBySlotOwner(client, [{ slotKey: 'a', add: (pipe) => pipe.exists('a') }])).toEqual([[0]])
  })

  it('repliesOf returns the replies in order, and refuses a discarded transaction', () => {
    expect(
      repliesOf([
        [null, 1],
        [null, 'OK'],
      ]),
    ).toEqual([1, 'OK'])
    expect(() => repliesOf(null)).toThrow(/discarded/)
    expect(() =>
      repliesOf([
        [null, 1],
        [new Error('WRONGTYPE'), undefined],
      ]),
    ).toThrow('WRONGTYPE')
  })
})
