// The history checker (issue 14): seeded concurrent histories over real Redis, checked against a model.
export {
  CHECK_TITLES,
  type CheckName,
  type CheckOptions,
  checkHistory,
  countByCheck,
  formatViolations,
  HistoryChecker,
  LATE_WRITE_MS,
  type LateWrite,
  lateWritesOf,
  type Violation,
} from './checker'
export { historyNow } from './clock'
export { type DatabaseClient, type DatabaseWrite, RecordDatabase, type Versioned } from './database'
export { type FaultHooks, FaultInjector, type FaultOptions, type InjectableFault } from './faults'
export {
  type CacheLibrary,
  HistoryInstance,
  type InstanceConfig,
  type LoadReport,
  type MemoryPeek,
  type Observed,
  type OpOutcome,
} from './instance'
export {
  type CommandHold,
  injectLatency,
  type LatencyHandle,
  type LatencyMode,
  type LatencyOptions,
} from './latency'
export { Prng } from './prng'
export {
  type CallRecord,
  type FaultKind,
  type FaultRecord,
  type History,
  type InstanceRecord,
  type Observation,
  Recorder,
} from './recorder'
export { type HistoryRun, type RunHistoryOptions, type RunSummary, runHistory } from './runner'
export { type HistoryTarget, startHistoryTarget, type Topology } from './target'
export {
  DEFAULT_WEIGHTS,
  describeOp,
  type KeyspaceOptions,
  keyspaceOf,
  type Op,
  type OpKind,
  type OpWeights,
  type ReadOp,
  type UpdateOp,
  WEAK_UPDATES,
  Workload,
} from './workload'
