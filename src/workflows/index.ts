// The public face of orchestration: the control plane's JobOrchestrator on Temporal, the
// `temper worker` that runs workflows and pod activities, and the deterministic data plan
// of a managed job (what a step trains on, at which learning rate).
export { learningRateAt } from './activities/host-support.js';
export { modelRenderer } from './activities/job-data.js';
export type { WorkflowSettings } from './definitions/proxies.js';
export { OrchestrationError, TemporalOrchestrator } from './orchestrator.js';
export {
  hostTaskQueue,
  type JobRef,
  SHARED_TASK_QUEUE,
  type TrainingPlan,
  workflowIdOf,
} from './types.js';
export {
  bundleWorkflows,
  installTemporalRuntime,
  startTemperWorker,
  type TemperWorker,
  type TemperWorkerOptions,
} from './worker.js';
export { WorkerMetrics } from './worker-metrics.js';
