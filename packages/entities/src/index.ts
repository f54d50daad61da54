export {
  type ClearAllOptions,
  EntityCache,
  type EntityCacheOptions,
  type ListPage,
  MAX_PAGE_LIMIT,
  type PageOptions,
} from './entity-cache'
export type { ListParams } from './params-key'
export {
  DEFAULT_MAX_SIZE,
  type EntitySchema,
  type IndexedListSchema,
  type ListSchema,
  MAX_ID_LENGTH,
  MAX_MAX_SIZE,
  type PlainListSchema,
  type Row,
} from './schemas'
