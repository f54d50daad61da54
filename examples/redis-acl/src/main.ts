import { startRedisServer } from '@layercache/test-utils'
import { runAclStory, runWithoutAcl } from './story'

// This example changes the users of the Redis it runs on, so it always starts throwaway servers of its
// own (redis-server must be on PATH) and never uses REDIS_URL.
const servers = await Promise.all([startRedisServer(), startRedisServer()])
try {
  await runWithoutAcl(servers[0].url)
  console.log()
  await runAclStory(servers[1].url)
} catch (error) {
  console.error(error)
  process.exitCode = 1
} finally {
  await Promise.all(servers.map((server) => server.stop()))
}
