export {
  type BatchWriter,
  compareSequences,
  FlushTimeoutError,
  QueueFullError,
  WriteBehind,
  type WriteBehindEntry,
  type WriteBehindEvents,
  type WriteBehindOptions,
  type WriteBehindStats,
} from './write-behind'
export { CacheInvalidationAfterWriteError, type WriteThroughOptions, writeThrough } from './write-through'
