export { MemoryLayer, type MemoryLayerOptions } from './memory-layer'
export { estimateBytes } from './size-estimate'
export type { ValueProtection } from './value-protection'
