/**
 * What workflows and activities exchange. Everything here is plain JSON (Temporal serialises
 * activity inputs and results), small (the data itself never travels through Temporal: the
 * host activities read and render the dataset themselves, deterministically), and free of
 * imports that do I/O, because the workflow bundle imports it.
 */

import type { EngineOptions } from '../engine/options.js';
import type {
  JobCollection,
  JobRef,
  JobState as OrchestrationJobState,
} from '../orchestration/jobs.js';
import type { AdamParams } from '../sdk/types.js';

export type { JobCollection, JobRef };

/** The states a job workflow writes (PAUSED is the platform's, for trainer jobs only). */
export type JobState = Exclude<OrchestrationJobState, 'JOB_STATE_PAUSED'>;

export type TrainingMethod = 'sft' | 'dpo' | 'orpo' | 'rft';

/** Reinforcement fine-tuning settings (managed-jobs.md, RFT), resolved with defaults. */
export interface RftSettings {
  /** accounts/{a}/evaluators/{id} */
  evaluator: string;
  /** Prompts per policy step (the whole dataset when it has < 2 x chunkSize, or -1). */
  chunkSize: number;
  /** Rollouts per prompt. */
  n: number;
  temperature: number;
  topP: number;
  topK: number;
  maxTokens: number;
  maxConcurrentRollouts: number;
  rolloutTimeoutMs: number;
  lossMethod: string;
  klBeta: number;
  /** Remote environment: rollouts run on the user's server (POST /init). */
  remoteServerUrl: string | null;
}

/**
 * A managed job's MLflow run settings (its `mlflowTrackingUri`, `mlflowExperimentName`,
 * `mlflowRunName`), resolved with the plan: the host's metric writes read them from here,
 * never from the job's row again.
 */
export interface JobTrackingPlan {
  mlflowTrackingUri: string;
  mlflowExperimentName: string;
  mlflowRunName: string | null;
}

/** Everything a host needs to train a managed job, resolved once by prepareJob. */
export interface TrainingPlan {
  method: TrainingMethod;
  /** accounts/{a}/{collection}/{id} */
  jobName: string;
  account: string;
  /** Base model resource name (or, for a warm start, the model the weights come from). */
  baseModel: string;
  /** Warm start: a promoted model whose weights replace the base model's at step 0. */
  warmStartFrom: string | null;
  /** accounts/{a}/datasets/{id} */
  dataset: string;
  /** SFT: held-out dataset; null = carve a split out of `dataset`. */
  evaluationDataset: string | null;
  outputModelId: string;
  loraRank: number;
  maxContextLength: number;
  /** Token budget of one optimizer step (sequences are packed whole). */
  batchTokens: number;
  epochs: number;
  learningRate: number;
  warmupSteps: number;
  gradientAccumulationSteps: number;
  /** Save a resumable checkpoint every this many optimizer steps (0 = only at the end). */
  checkpointEvery: number;
  /** DPO beta. */
  beta: number;
  /** ORPO lambda (weight of the odds-ratio term). */
  orpoLambda: number;
  /** Seed of the data order. */
  seed: number;
  /**
   * The pod's engine settings (TrainerLaunchSpec.engine). Optional: a plan made before they
   * existed (a workflow still running then) carries none.
   */
  engine?: Required<EngineOptions>;
  /** Optimizer steps in the whole job. */
  totalSteps: number;
  /** Examples after validation (and unrolling). */
  exampleCount: number;
  /** How often a lost trainer is replaced before the job fails. */
  maxTrainerRestarts: number;
  /** RFT only. */
  rft: RftSettings | null;
  /**
   * The job's MLflow run, or null when it configures none. Optional: a plan made before it
   * existed (a workflow still running then) carries none and is not tracked.
   */
  tracking?: JobTrackingPlan | null;
  /** A resumed job continues from its last resumable checkpoint. */
  resumeFrom: { checkpoint: string; step: number } | null;
  /**
   * Every resumable checkpoint of the job so far, oldest first (resumeFrom is the last): when
   * the newest fails verification the job restores the one before it.
   */
  checkpointHistory: { checkpoint: string; step: number }[];
  /** Pod job ids are this plus `-t{attempt}` (so the workflow can name a pod being launched). */
  podJobIdBase: string;
  /**
   * The attempt number of this run's first pod: a resumed job's pods continue the numbering
   * of the pods before them, so their checkpoint names never collide with the earlier ones'.
   */
  firstPodAttempt: number;
}

/** A trainer pod serving one job's model. */
export interface TrainerHandle {
  /** The pod's trainer job id (rlorTrainerJobs id; checkpoints are named under it). */
  podJobId: string;
  /** The model on the pod that holds the job's weights. */
  modelId: string;
  /** Task queue of the host that runs the pod (every pod activity goes there). */
  hostQueue: string;
}

export interface SegmentInput {
  plan: TrainingPlan;
  trainer: TrainerHandle;
  /** First optimizer step of the segment (0-based). */
  fromStep: number;
  /** Steps [fromStep, toStep) run; a resumable checkpoint is saved at toStep if `save`. */
  toStep: number;
  save: boolean;
  /** Restore this resumable checkpoint (weights + optimizer + step) before the first step. */
  restoreFrom: string | null;
}

export interface SegmentResult {
  /** The next step to run. */
  step: number;
  /** The resumable checkpoint saved at `step`, if one was. */
  checkpoint: string | null;
  /** The servable (promotable) export saved with it: what a cancelled job keeps as its model. */
  samplerCheckpoint?: string | null;
  /** Mean loss of the segment's last step. */
  lastLoss: number | null;
  /** RFT: every rollout of a full epoch scored the same; the job stops early. */
  earlyStop?: boolean;
}

export interface FinishInput {
  plan: TrainingPlan;
  trainer: TrainerHandle;
}

export interface PromoteInput {
  account: string;
  checkpoint: string;
  outputModelId: string;
  baseModel?: string;
  /** The job the model comes from (recorded on the model). */
  sourceJob?: string;
}

export interface ModelSummary {
  name: string;
  kind: string;
  state: string;
}

export interface JobStatusUpdate {
  state: JobState;
  message?: string;
  /** Merged into the job body (progress, output model, ...). */
  fields?: Record<string, unknown>;
}

/** An rlorTrainerJob's pod, as its REST resource asks for it. */
export interface TrainerJobSpec {
  jobName: string;
  account: string;
  /** The pod's job id is the resource id: checkpoints live under the job's name. */
  jobId: string;
  baseModel: string;
  loraRank: number;
  forwardOnly: boolean;
  /** 0 = never (disableInactivityCleanup). */
  inactivityTimeoutMs: number;
  /**
   * The pod's engine settings (TrainerLaunchSpec.engine; the launcher checks them against the
   * engine's schema). Optional: a workflow started before they existed carries none.
   */
  engine?: Required<EngineOptions>;
}

/** How a supervised pod ended. */
export interface TrainerExit {
  /** stopped: inactivity or a requested stop; lost: crashed, killed, or its host died. */
  kind: 'stopped' | 'lost';
  reason: string;
}

/**
 * `:executeTrainStep` on an rlorTrainerJob: one optimizer step on the trainer over datums
 * given inline (Training API datum JSON), with a built-in loss. `modelId` names a model on the
 * pod; without it the job's own model (created by the first such call) is used.
 */
export interface TrainStepRequest {
  modelId?: string;
  datums: { modelInput: number[]; lossFnInputs: Record<string, number[]> }[];
  lossFn?: string;
  lossFnConfig?: Record<string, number>;
  adamParams?: AdamParams;
  gradAccumulationNormalization?: 'num_loss_tokens' | 'num_sequences' | 'none';
}

export interface TrainStepResult {
  modelId: string;
  /** The model's optimizer step after this one. */
  step: number;
  metrics: Record<string, number>;
}

/** Activities any worker runs (shared queue): the store and host selection. */
export interface ControlActivities {
  /** Reads and validates the job, sets VALIDATING then RUNNING; throws JobInvalid. */
  prepareTrainingJob(ref: JobRef): Promise<TrainingPlan>;
  setJobStatus(ref: JobRef, update: JobStatusUpdate): Promise<void>;
  /** The task queue of the worker that picked this up: the host that will run the pod. */
  claimHost(): Promise<string>;
  /** Promotes a checkpoint to a model and records it in the store. */
  promoteCheckpoint(input: PromoteInput): Promise<ModelSummary>;
  /** Reads an rlorTrainerJob, sets CREATING; throws JobInvalid. */
  prepareTrainerJob(ref: JobRef): Promise<TrainerJobSpec>;
}

/** Activities that run on the host that owns the pod (its own task queue). */
export interface HostActivities {
  launchTrainer(plan: TrainingPlan, attempt: number): Promise<TrainerHandle>;
  trainSegment(input: SegmentInput): Promise<SegmentResult>;
  /** Exports the final sampler weights; returns the checkpoint name to promote. */
  exportFinalWeights(input: FinishInput): Promise<string>;
  /** Stops the pod; a pod that is already gone is fine. */
  stopTrainer(podJobId: string): Promise<void>;
  /**
   * Starts an rlorTrainerJob's pod; resolves once it serves, with its gRPC address. The pod's
   * token goes straight into the job's row (sealed by the store) and never through the
   * workflow, so it is not in Temporal's history; the job publishes both to its account while
   * it serves.
   */
  launchTrainerJob(spec: TrainerJobSpec): Promise<{ address: string }>;
  /** One optimizer step on a trainer job's pod (`:executeTrainStep`). */
  executeTrainStep(spec: TrainerJobSpec, request: TrainStepRequest): Promise<TrainStepResult>;
  /** Watches the pod until it exits (heartbeating); cancelled: stops it. */
  superviseTrainer(spec: TrainerJobSpec): Promise<TrainerExit>;
}

/** Application failure types the workflows treat specially. */
export const FAILURE = {
  /** The job or its dataset is invalid: fail the job, never retry. */
  jobInvalid: 'JobInvalid',
  /**
   * The resumable checkpoint a segment was to restore from fails verification (DATA_LOSS):
   * restore an older one instead of retrying this one.
   */
  checkpointCorrupt: 'CheckpointCorrupt',
} as const;

/** An activity found its job already ended (cancelled, ...) and stopped: never retried. */
export const JOB_ENDED = 'JobEnded';

export const SHARED_TASK_QUEUE = 'temper-jobs';

export function hostTaskQueue(hostId: string): string {
  return `temper-host-${hostId}`;
}

export function workflowIdOf(ref: JobRef): string {
  return `accounts/${ref.account}/${ref.collection}/${ref.id}`;
}
