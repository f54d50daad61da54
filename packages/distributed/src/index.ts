export {
  type InvalidationBusEvents,
  type InvalidationBusStats,
  RedisInvalidationBus,
  type RedisInvalidationBusOptions,
  type RejectionReason,
} from './redis-invalidation-bus'
export type { LeaseOwner, RedisLease } from './redis-lease'
export {
  RedisSingleFlightCoordinator,
  type RedisSingleFlightCoordinatorOptions,
  type SingleFlightCoordinatorStats,
} from './redis-single-flight-coordinator'
export { RedisTagIndex, type RedisTagIndexOptions } from './redis-tag-index'
export type { SingleFlightSerializer } from './single-flight-result'
