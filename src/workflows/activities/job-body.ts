/**
 * The fields of a stored SFT or DPO job that the workflow reads, with the spec's defaults.
 * The REST layer validated them already; this parse is the workflow's own boundary check, so
 * a row edited by hand or written by an older control plane fails loudly instead of training
 * with surprises.
 */
import { z } from 'zod';

const positiveInt = z.number().int().positive();

export const trainingJobBodySchema = z
  .object({
    state: z.string().optional(),
    baseModel: z.string().min(1).optional(),
    warmStartFrom: z.string().min(1).optional(),
    dataset: z.string().min(1),
    outputModel: z.string().min(1).optional(),
    evaluationDataset: z.string().optional(),
    maxContextLength: positiveInt.optional(),
    /** Tokens per optimizer step (micro-batch; packed whole sequences). */
    batchSize: positiveInt.optional(),
    epochs: z.number().positive().default(1),
    learningRate: z.number().positive().optional(),
    learningRateWarmupSteps: z.number().int().nonnegative().default(0),
    gradientAccumulationSteps: positiveInt.default(1),
    loraRank: z.number().int().nonnegative().default(8),
    checkpointFrequency: z.number().int().nonnegative().default(0),
    beta: z.number().gt(0).lt(0.5).default(0.1),
    seed: z.number().int().nonnegative().default(0),
    /** Written by the workflow: where a resumed job continues. */
    lastCheckpoint: z.object({ checkpoint: z.string(), step: z.number().int() }).optional(),
  })
  .passthrough()
  .refine((b) => (b.baseModel === undefined) !== (b.warmStartFrom === undefined), {
    message: 'exactly one of baseModel and warmStartFrom must be set',
  });

export type TrainingJobBody = z.output<typeof trainingJobBodySchema>;

/** The model's default learning rate for a managed job (LoRA trains adapters, larger steps). */
export function defaultLearningRate(loraRank: number): number {
  return loraRank > 0 ? 1e-3 : 1e-4;
}

/** Default tokens per step when the job names none. */
export const DEFAULT_BATCH_TOKENS = 4096;

/** The RFT-specific fields (managed-jobs.md, RFT), with the chosen defaults. */
export const rftJobFieldsSchema = z
  .object({
    evaluator: z.string().min(1),
    chunkSize: z.number().int().default(200),
    rlLossMethod: z.enum(['grpo', 'dapo', 'gspo-token']).default('grpo'),
    rlKlBeta: z.number().nonnegative().default(0),
    temperature: z.number().min(0.1).max(2).default(0.7),
    topP: z.number().gt(0).max(1).default(1),
    topK: z.number().int().nonnegative().default(40),
    responseCandidatesCount: z.number().int().min(2).optional(),
    n: z.number().int().min(2).optional(),
    maxTokens: z.number().int().min(16).max(16384).default(2048),
    maxConcurrentRollouts: positiveInt.default(96),
    /** Seconds. */
    rolloutTimeout: z.number().positive().default(60),
  })
  .passthrough();

export type RftJobFields = z.output<typeof rftJobFieldsSchema>;

/** The fields of an rlorTrainerJob the workflow reads (training-api.md, Trainer jobs). */
export const trainerJobBodySchema = z
  .object({
    baseModel: z.string().min(1),
    loraRank: z.number().int().nonnegative().default(0),
    forwardOnly: z.boolean().default(false),
    /** Protobuf JSON duration ("1800s"); 0 or unset = 60 minutes. */
    inactivityTimeout: z.string().optional(),
    disableInactivityCleanup: z.boolean().default(false),
  })
  .passthrough();
