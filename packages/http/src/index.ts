export { parseCacheControl, type ResponseDirectives } from './cache-control'
export { baseKey, variantKey, varyNames } from './keys'
export {
  defaultBypass,
  type ResponseCacheOptions,
  type ResponseStore,
  type RouteCacheOptions,
  routeSettingsOf,
} from './options'
export { ResponseCache } from './response-cache'
export {
  bodyOf,
  headerText,
  isStoredResponse,
  matchesIfNoneMatch,
  type StoredResponse,
  type Unstorable,
} from './stored-response'
export type {
  CacheRequest,
  CacheStatus,
  CapturedResponse,
  Delivery,
  HandlerOutcome,
  OutgoingHeaderValue,
  RouteSettings,
  SendHeaders,
} from './types'
