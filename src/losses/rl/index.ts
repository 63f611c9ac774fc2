/** Client-side policy losses (recipes) and the managed-RFT loss methods. */

export { type CispoConfig, cispoConfigSchema, cispoLoss } from './cispo.js';
export {
  AGGREGATIONS,
  type Aggregation,
  type KernelContext,
  type PolicyInputs,
  type PolicyKernel,
  type PolicyLossSpec,
  PolicyStats,
  policyLoss,
  readPolicyInputs,
} from './common.js';
export { type DroConfig, droConfigSchema, droLoss } from './dro.js';
export { type GspoConfig, gspoConfigSchema, gspoLoss } from './gspo.js';
export {
  type ImportanceSamplingConfig,
  importanceSamplingConfigSchema,
  importanceSamplingLoss,
  type ReinforceConfig,
  reinforceConfigSchema,
  reinforceLoss,
} from './importance-sampling.js';
export {
  klBetaRefusal,
  RL_LOSS_METHOD_DEFAULTS,
  RL_LOSS_METHODS,
  type RlLossMethod,
  type RlLossMethodInput,
  type RlLossMethodSettings,
  type RlMethodLossOptions,
  resolveRlLossMethod,
  rlMethodLoss,
} from './methods.js';
export {
  type DapoConfig,
  dapoConfigSchema,
  dapoLoss,
  type GrpoConfig,
  grpoConfigSchema,
  grpoLoss,
} from './ppo.js';
export {
  SAFETY_CLAMP,
  type TisConfig,
  type TisConfigInput,
  TisStats,
  tisConfigSchema,
  tisMetrics,
  tisWeights,
} from './tis.js';
