export * from '@layercache/core'
export * from '@layercache/layer-memory'
export * from '@layercache/layer-redis'
export * from '@layercache/write-strategies'
