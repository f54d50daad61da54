export {
  INSTRUMENTATION_NAME,
  instrumentLayercache,
  type LayercacheInstrumentation,
  type LayercacheInstrumentationOptions,
} from './instrument'
export { DEFAULT_BUCKETS } from './metrics'
