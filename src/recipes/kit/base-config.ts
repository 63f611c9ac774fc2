/**
 * The fields every recipe config has (the cookbook's top-level `Config` fields): where its
 * bookkeeping lives, which model it trains and how it reaches trainers, checkpointing
 * (dcp_save_interval, output_model_id, init_from_checkpoint) and tracking. Recipe schemas
 * extend this one; keys are the cookbook's snake_case so a config file reads like its docs.
 */
import { z } from 'zod';
import { BUNDLED_MODEL } from '../../catalog/bundled.js';
import { trackingSettingsSchema } from '../../tracking/index.js';
import { checkpointFrequency, learningRate, loraRank, maxContextLength, seed } from '../fields.js';
import { adamWSchema } from '../optimizer.js';
import { scheduleSchema } from '../schedule.js';

const resourceId = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,62}$/, {
    message: 'must be 1-63 characters of a-z, 0-9 and -, starting with a letter (a resource id)',
  })
  .refine((s) => !s.endsWith('-'), { message: 'must not end with a hyphen' });

const tracking = trackingSettingsSchema.shape;

export const recipeBaseShape = {
  /** Directory for dataloader.json, run.json, metrics.jsonl; rerunning on it resumes. */
  log_path: z.string().min(1, { message: 'log_path is required' }),
  base_model: z.string().min(1).default(BUNDLED_MODEL.name),
  /** 0 = full-parameter training (any rank the engine holds: recipes drive trainers). */
  lora_rank: loraRank.trainer.schema.default(loraRank.trainer.default),
  /** Peak rate; default: the job default for this lora_rank (1e-3 LoRA, 1e-4 full). */
  learning_rate: learningRate.job.schema.optional(),
  /** Warm-up and decay of the rate over the run's steps. */
  lr_schedule: scheduleSchema.prefault({}),
  /** AdamW's other settings (the engine's defaults). */
  adam: adamWSchema.omit({ learningRate: true }).prefault({}),
  /** Sequences are cut at this many tokens; default: the trainer's context length. */
  max_seq_len: maxContextLength.schema.optional(),
  seed: seed.schema.default(seed.default),
  /** Save a resumable (DCP) checkpoint every N steps; 0 = only the final one. */
  dcp_save_interval: checkpointFrequency.schema.default(checkpointFrequency.default),
  /** Promote the final checkpoint to accounts/{account}/models/{id}. */
  output_model_id: resourceId.optional(),
  /** `job-id:checkpoint-name`: load those weights, step counter from 0. */
  init_from_checkpoint: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]*:[A-Za-z0-9][\w.-]*$/, {
      message: 'init_from_checkpoint must be "job-id:checkpoint-name"',
    })
    .optional(),
  /** Control plane of `temper up` (trainers become rlorTrainerJobs there); unset = local pods. */
  base_url: z.string().url().optional(),
  /** API key for base_url (default: TEMPER_API_KEY). */
  api_key: z.string().optional(),
  account: z.string().default('default'),
  /** Engine threads of each local trainer pod / replica. */
  threads: z.number().int().positive().optional(),
  mlflow_tracking_uri: tracking.mlflowTrackingUri,
  mlflow_experiment_name: tracking.mlflowExperimentName,
  mlflow_run_name: tracking.mlflowRunName,
  wandb_project: tracking.wandbProject,
  wandb_entity: tracking.wandbEntity,
  wandb_api_key: tracking.wandbApiKey,
  wandb_run_name: tracking.wandbRunName,
  wandb_base_url: tracking.wandbBaseUrl,
};

export const recipeBaseSchema = z.strictObject(recipeBaseShape);
export type RecipeBaseConfig = z.output<typeof recipeBaseSchema>;

/** The run's peak learning rate (the configured one, else the default for its LoRA rank). */
export function peakLearningRate(c: RecipeBaseConfig): number {
  return c.learning_rate ?? learningRate.job.default(c.lora_rank);
}

/** The tracking part of a recipe config, in the tracker's terms. */
export function trackingOf(c: RecipeBaseConfig) {
  return {
    mlflowTrackingUri: c.mlflow_tracking_uri,
    mlflowExperimentName: c.mlflow_experiment_name,
    mlflowRunName: c.mlflow_run_name,
    wandbProject: c.wandb_project,
    wandbEntity: c.wandb_entity,
    wandbApiKey: c.wandb_api_key,
    wandbRunName: c.wandb_run_name,
    wandbBaseUrl: c.wandb_base_url,
  };
}
