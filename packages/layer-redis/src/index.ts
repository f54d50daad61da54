export {
  CLEAR_ALL_CONFIRMATION,
  type ClearAllCacheOptions,
  type ClearAllCacheResult,
  clearAllCache,
} from './clear-all-cache'
export { ConnectionGuard } from './connection-guard'
export {
  type CompressionOptions,
  decodeStored,
  ENTRY_HEAD_BYTES,
  looksLikeEntry,
} from './envelope-codec'
export {
  DEFAULT_KNOWN_KEYS_SHARDS,
  type IndexShard,
  layoutKeyOf,
  legacyShardOf,
  MAX_KNOWN_KEYS_SHARDS,
  parseLayout,
  shardsOf,
  TAG_SEPARATOR,
} from './index-layout'
export { escapeGlob, normalizePrefix, scanPattern } from './key-prefix'
export { LAYOUT_WARNING, LEGACY_WARNING } from './known-keys-layout'
export { LuaScript, type ScriptCall } from './lua-script'
export {
  type MigrateTagIndexOptions,
  type MigrateTagIndexProgress,
  type MigrateTagIndexReport,
  type MigrateTagIndexSource,
  migrateTagIndex,
} from './migrate-tag-index'
export { generationKeyOf } from './redis-generation'
export type { CallDeadline, PipelineLike, RedisIO } from './redis-io'
export type { PendingRead } from './redis-key-index'
export { type RedisClient, RedisLayer, type RedisLayerOptions } from './redis-layer'
export { tagSetPrefixOf } from './redis-tag-store'
export { COMPRESSED_MARKER, jsonSerializer, msgpackSerializer, type Serializer } from './serializer'
export { execBySlotOwner, type SlotTask } from './slot-pipelines'
export {
  DEFAULT_SCAN_COUNT,
  type RedisTagIndexOptions,
  readTagIndexOptions,
  type TagIndexConfig,
} from './tag-index-options'
