/**
 * Losses, advantages and metrics: the public face of src/losses. The same code computes the
 * built-in losses in a trainer pod and custom losses in a user's loop.
 *
 *   autodiff      Vector, param/constant, ops, fused ops, backward/gradients
 *   LossFn        (data, logprobs) => {loss, metrics}; metric keys `name:reduction`
 *   run           forward / forwardBackward: d(loss)/d(logprob) per datum
 *   builtinLoss   cross_entropy, importance_sampling, ppo, cispo, dro (server side, sums)
 *   rl            GRPO, DAPO, GSPO, CISPO, DRO, IS, REINFORCE; managed methods
 *   preference    DPO, ORPO;  sft;  distillation (sampled reverse KL)
 *   advantages    group z-score, uniform filtering, IGPO, KL-shaped;  kl: k1/k3
 *   normalization grad-accumulation modes for optim_step
 */

export {
  computeGroupAdvantages,
  type DropReason,
  GROUP_EPSILON,
  GROUP_STD_FLOOR,
  type GroupAdvantages,
  groupZScores,
  igpoTurnAdvantages,
  isUniformGroup,
  type KlShapingInput,
  klShapedAdvantages,
  type TurnReward,
  turnAdvantagesToTokens,
} from './advantages.js';
export * from './autodiff/index.js';
export {
  BUILTIN_LOSS_NAMES,
  type BuiltinLossConfig,
  type BuiltinLossName,
  builtinConfigSchemas,
  builtinLoss,
  isBuiltinLossName,
} from './builtin.js';
export {
  alignCompletionLogprobs,
  FIELDS,
  fromTokenDatum,
  type LossDatum,
  type LossFnInputs,
  lossDatumSchema,
  type NumericArray,
  parseLossDatums,
  type RolloutSample,
  readFloats,
  readMask,
  readTensor,
  requireFloats,
  rolloutSampleToDatum,
  sequenceTokens,
  type TensorData,
  type TensorDtype,
  type TensorInput,
} from './datum.js';
export {
  buildDistillationDatums,
  DISTILLATION_RATIO_LOG_CAP,
  distillationLoss,
  type ReverseKlAdvantageInput,
  type ReverseKlAdvantages,
  sampledReverseKlAdvantages,
} from './distillation.js';
export { LossError, type LossErrorCode, type LossErrorDetails } from './errors.js';
export { type KlEstimator, klK1, klK3, meanKl, ppoKl, refKld } from './kl.js';
export {
  METRIC_REDUCTIONS,
  type MetricReduction,
  type Metrics,
  mergeMetrics,
  metricKey,
  normalizeMetrics,
  parseMetricKey,
} from './metrics.js';
export {
  countLossSequences,
  countLossTokens,
  DEFAULT_GRAD_ACC_NORMALIZATION,
  GRAD_ACC_NORMALIZATIONS,
  type GradAccNormalization,
  GradAccumulationCounter,
  gradAccumulationScale,
  parseGradAccNormalization,
} from './normalization.js';
export {
  commonPrefixLength,
  type DpoConfig,
  dpoConfigSchema,
  dpoLoss,
  type OrpoConfig,
  orpoConfigSchema,
  orpoLoss,
  pairResponseStart,
} from './preference.js';
export * from './rl/index.js';
export {
  crossEntropyBackwardDatums,
  type ForwardBackwardResult,
  type ForwardResult,
  forward,
  forwardBackward,
  type LossFnOutput,
} from './run.js';
export {
  type SftConfig,
  sftConfigSchema,
  sftLoss,
  targetWeights,
  type WeightReduction,
} from './sft.js';
export type { LossFn, LossOutput } from './types.js';
