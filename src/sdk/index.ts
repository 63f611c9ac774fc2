/**
 * The Training API client: ServiceClient → TrainingClient (forward, forwardBackward,
 * forwardBackwardCustom, optimStep, sample; checkpoint methods once checkpoints are wired),
 * datum builders, and the typed error every call rejects with.
 */

export type { CheckpointRow } from '../checkpoints/catalog/index.js';
export type { PromotedModel } from '../checkpoints/promotion.js';
export { TrainerError, type TrainerErrorCode } from '../trainer/errors.js';
export type { Launcher, TrainerEndpoint, TrainerLaunchSpec } from '../trainer/launcher/index.js';
export { LocalProcessLauncher } from '../trainer/launcher/index.js';
export {
  AdaptiveConcurrencyController,
  FixedConcurrencyController,
} from './concurrency.js';
export {
  ControlPlaneLauncher,
  type ControlPlaneLauncherOptions,
} from './control-plane-launcher.js';
export {
  conversationDatum,
  conversationTrainingDatum,
  type Datum,
  type DatumOptions,
  datumFromModelInputWeights,
  nextTokenDatum,
  targetTokenDatum,
  truncateSequence,
} from './datums.js';
export {
  createDeploymentSampler,
  DeploymentSampler,
  DeploymentSamplerError,
  type DeploymentSamplerOptions,
  HotLoadClient,
  type HotLoadOptions,
  type SampledCompletion,
  type SampleWithTokensOptions,
  type SnapshotRef,
} from './deployment-sampler.js';
export {
  type CloseOptions,
  type SamplingClientOptions,
  SDK_VERSION,
  ServiceClient,
  type ServiceClientOptions,
  type ServiceConfig,
  serviceConfigSchema,
} from './service-client.js';
export {
  type ForwardBackwardCustomOptions,
  type SaveSamplerResult,
  TrainingClient,
} from './training-client.js';
export {
  type AdamParams,
  type CustomEmbeddingResult,
  type CustomForwardBackwardResult,
  type DatumInput,
  type EncodedTextChunk,
  type ForwardBackwardResult,
  type GradAccumulationNormalizationInput,
  ModelInput,
  type OptimStepResult,
  type OutputTensor,
  type SampledSequence,
  type SampleOptions,
  type SampleResult,
  type TrainingDatum,
  toLossDatum,
  toTrainingDatum,
  toWireDatum,
} from './types.js';
