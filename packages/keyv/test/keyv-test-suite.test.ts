// Keyv's own compliance suite for storage adapters (@keyv/test-suite: the API, value and namespace
// cases), run against KeyvLayercache on a real stack: memory over a real Redis, and a namespace view.
import keyvTestSuite from '@keyv/test-suite'
import { CacheStack } from '@layercache/core'
import { MemoryLayer } from '@layercache/layer-memory'
import { RedisLayer } from '@layercache/layer-redis'
import { getTestRedis, type TestRedis } from '@layercache/test-utils'
import Keyv from 'keyv'
import * as vitest from 'vitest'
import { KeyvLayercache } from '../src'

let redis: TestRedis
let stack: CacheStack
vitest.beforeAll(async () => {
  redis = await getTestRedis()
  stack = new CacheStack([
    new MemoryLayer({ ttl: 60_000 }),
    new RedisLayer({ client: redis.createClient(), prefix: `${redis.keyPrefix}suite` }),
  ])
})
vitest.afterAll(() => redis.close())

vitest.describe('@keyv/test-suite on memory over Redis', () => {
  // A new adapter per Keyv, as Keyv writes its namespace onto its store; all on the one stack.
  keyvTestSuite(vitest, Keyv, () => new KeyvLayercache(stack))
})

vitest.describe('@keyv/test-suite on a namespace of the stack', () => {
  keyvTestSuite(vitest, Keyv, () => new KeyvLayercache(stack.namespace('tenant:acme')))
})

vitest.describe('@keyv/test-suite on Redis alone', () => {
  let redisOnly: CacheStack
  vitest.beforeAll(() => {
    redisOnly = new CacheStack([
      new RedisLayer({ client: redis.createClient(), prefix: `${redis.keyPrefix}suite-l2` }),
    ])
  })
  keyvTestSuite(vitest, Keyv, () => new KeyvLayercache(redisOnly))
})
