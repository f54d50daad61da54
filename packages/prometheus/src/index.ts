export { type LayercacheMetrics, registerLayercacheMetrics } from './exporter'
export {
  type BucketsOption,
  DEFAULT_BUCKETS,
  type HistogramName,
  type LayercacheMetricsOptions,
} from './options'
