export {
  type InvalidationBusEvents,
  type InvalidationBusStats,
  RedisInvalidationBus,
  type RedisInvalidationBusOptions,
  type RejectionReason,
} from './redis-invalidation-bus'
