export { connectionLost, connectionReady } from './connection-events'
export { duplicateClient } from './duplicate-client'
export { RedisUnavailableForTestsError } from './errors'
export { eventually } from './eventually'
export { freePort } from './free-port'
export { type RedisClusterHandle, type StartRedisClusterOptions, startRedisCluster } from './redis-cluster'
export { type RedisServerHandle, type StartRedisServerOptions, startRedisServer } from './redis-server'
export type { RedisSource } from './redis-source'
export { type ProcessRun, runProcess } from './run-process'
export { type StartTcpProxyOptions, startTcpProxy, type TcpProxyHandle } from './tcp-proxy'
export { getTestRedis, spawnTestRedis, type TestRedis } from './test-redis'
export {
  type ForkWorkerOptions,
  forkWorker,
  type SerializedError,
  serveWorker,
  type WorkerArgs,
  type WorkerEmit,
  WorkerError,
  type WorkerExit,
  WorkerExitedError,
  type WorkerHandle,
  type WorkerMethodName,
  type WorkerResult,
} from './worker-process'
