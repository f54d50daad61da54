export { bounded } from './bounded'
export {
  type BatchLoader,
  type BatchLoaderContext,
  CacheStack,
  type CacheStackOptions,
  type CloseOptions,
  type GetOrSetOptions,
  type GracefulDegradationOptions,
  type InvalidationPlan,
  type LayerErrorMode,
  type Loader,
  type MsetEntry,
  type ReadOptions,
  type SetOptions,
  type WarmEntry,
  type WarmOptions,
  type WarmResult,
  type WrapOptions,
} from './cache-stack'
export type { CircuitState } from './circuit-breaker'
export { checkClientReplies } from './client-replies'
export { coarseNow } from './coarse-clock'
export {
  type BusContext,
  type CacheOperationContext,
  type CacheOperationName,
  type CircuitMessage,
  channels as diagnosticsChannels,
  type InvalidationContext,
  type InvalidationKind,
  type LoadContext,
  type LoadTrigger,
  type OperationDone,
  observe,
  observed,
  PLAIN_CHANNELS,
  type StaleReason,
  TRACING_CHANNELS,
  type UnverifiedMessage,
  type WriteBehindFlushContext,
} from './diagnostics'
export type {
  BusListener,
  BusOperation,
  InvalidationBus,
  SingleFlightCoordinator,
  SingleFlightLease,
  SingleFlightResult,
  SingleFlightWait,
  UnverifiedReason,
} from './distribution'
export {
  type CacheEntry,
  createEntry,
  ENTRY_FORMAT_VERSION,
  type EntryMeta,
  effectiveTtl,
  entryMeta,
  isExpired,
  isFresh,
  remainingTtl,
} from './entry'
export {
  asUnavailable,
  CacheClosedError,
  CircuitOpenError,
  CorruptEntriesError,
  CorruptEntryError,
  type CorruptReason,
  InvalidationBusError,
  InvalidKeyError,
  InvalidOperationError,
  InvalidOptionError,
  InvalidTtlError,
  InvalidValueError,
  LayerCacheError,
  LayerTimeoutError,
  LayerUnavailableError,
  LoaderTimeoutError,
  OversizedValueError,
  SerializationError,
  UnsupportedClientError,
  WriteFencedError,
} from './errors'
export { type CacheEventListener, type CacheEventMap, type CacheEventName, CacheEvents } from './events'
export {
  FRESHNESS_OPTIONS,
  type FreshnessOptions,
  type FreshnessPolicy,
  judge,
  type Verdict,
} from './freshness'
export { type GenerationCleanupOptions, generationPrefix } from './generations'
export {
  type BoundOptions,
  compileGlob,
  globToRedisMatch,
  InvalidPatternError,
  indexPrefixOf,
  type KeyMatch,
  keyMatcher,
  literalPrefixOf,
  MAX_PATTERN_LENGTH,
  MemoryTagIndex,
  type MemoryTagIndexOptions,
  PrefixTrie,
  type TagMatchMode,
  validatePattern,
} from './invalidation'
export { InvalidationFence } from './invalidation-fence'
export { type InvalidationRule, InvalidationRules } from './invalidation-rules'
export { DEPENDENCY_TAG } from './invalidator'
export {
  type CacheLayer,
  type CommitWrite,
  type InvalidateKeysOptions,
  isLocalLayer,
  type LayerWrite,
  type LayerWriteOptions,
  type LocalCacheLayer,
  type MaybePromise,
} from './layer'
export type { LoaderContext } from './loader-context'
export {
  ALL_METRICS,
  HISTOGRAMS,
  type Labels,
  type MetricDefinition,
  type MetricKind,
  type ObservableQueue,
  type Observation,
  type ObservationSubscription,
  observationsOf,
  prometheusName,
  type Sample,
  STACK_METRICS,
  stackSamples,
  statsSamples,
  subscribeObservations,
  WRITE_BEHIND_METRICS,
  writeBehindSamples,
} from './metrics-model'
export { SchemaMismatchError, type WithSchema } from './schema'
export { markedStale } from './soft-expiry'
export type { CacheStats, LayerStats } from './stats'
export {
  assertCacheableValue,
  assertKey,
  assertKeyText,
  assertKnownOptions,
  assertOneOf,
  assertPositiveInteger,
  assertTags,
  assertTtl,
  isReservedKey,
  MAX_KEY_LENGTH,
  MAX_TTL_MS,
  reservedKeyReason,
} from './validation'
