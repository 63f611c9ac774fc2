/**
 * Recipes: one home per training method. This entry holds what every method shares: the
 * training settings (one schema, default, range and message each), the AdamW configuration,
 * the learning-rate schedules, the supervised methods' steps and packed data, which
 * managed SFT/DPO/ORPO jobs run as the sft/dpo/orpo recipes do, and the RL step's parts,
 * which managed RFT jobs run as the rl recipe does. Methods' own configs and loops
 * live beside it (src/recipes/<method>/) and build on these.
 */

export { durationSeconds } from './durations.js';
export * as fields from './fields.js';
export {
  documentedIssue,
  type Field,
  isPowerOfTwo,
  jobSettings,
  MIN_CONTEXT_LENGTH,
  optionalShape,
  rftSettings,
  SETTINGS,
  sci,
} from './fields.js';
export { modelContextLength } from './kit/data.js';
export {
  attachReferenceLogprobs,
  heldOutLoss,
  type SupervisedMethod,
  type SupervisedSettings,
  supervisedStep,
  trainSupervisedSteps,
  weightSum,
} from './kit/supervised.js';
export {
  buildSupervisedData,
  type PackedDataSettings,
  type StepBatches,
  type SupervisedData,
} from './kit/supervised-data.js';
export {
  ADAMW_DEFAULTS,
  type AdamWConfig,
  type AdamWParams,
  adamW,
  adamWFields,
  adamWSchema,
  MANAGED_JOB_ADAMW,
} from './optimizer.js';
export {
  epochSteps,
  inLanes,
  type PlannedStep,
  promptLanes,
  type RolloutSample,
  type RolloutSampling,
  type Rollouts,
  rolloutDatums,
  rolloutMetrics,
  rolloutSeed,
  sampleGroup,
  trainStep,
} from './rl/steps.js';
export { learningRateAt, type Schedule, type ScheduleConfig, scheduleSchema } from './schedule.js';
