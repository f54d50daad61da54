export type { CompressionOptions } from './envelope-codec'
export { escapeGlob, normalizePrefix, scanPattern } from './key-prefix'
export { type RedisClient, RedisLayer, type RedisLayerOptions } from './redis-layer'
export { jsonSerializer, msgpackSerializer, type Serializer } from './serializer'
