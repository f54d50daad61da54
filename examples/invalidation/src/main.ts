import { connectRedis } from '@layercache/test-utils/example-redis'
import { runInvalidationStory } from './story'

const redis = await connectRedis()
console.log(`Using ${redis.description}.`)
// Every key of the run, the layer's own included, is removed when it closes.
const prefix = `shop-demo-${process.pid}-${Date.now()}:`
redis.removeOnClose(prefix)
try {
  await runInvalidationStory(redis.client, console.log, prefix)
} catch (error) {
  console.error(error)
  process.exitCode = 1
} finally {
  await redis.close()
}
