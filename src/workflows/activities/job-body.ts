/**
 * The fields of a stored job that the workflow reads. The REST layer validated them and
 * resolved every default already; this parse is the workflow's own boundary check, so a row
 * edited by hand or written by an older control plane fails loudly instead of training with
 * surprises. Defaults, where a row lacks a field, are the control plane's own constants.
 */
import { z } from 'zod';
import { DEFAULT_LORA_RANK, RFT_DEFAULTS } from '../../control-plane/index.js';

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
    loraRank: z.number().int().nonnegative().default(DEFAULT_LORA_RANK),
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

/** The RFT-specific fields (managed-jobs.md, RFT), with the chosen defaults. */
export const rftJobFieldsSchema = z
  .object({
    evaluator: z.string().min(1),
    chunkSize: z.number().int().default(RFT_DEFAULTS.chunkSize),
    rlLossMethod: z.enum(['grpo', 'dapo', 'gspo-token']).default(RFT_DEFAULTS.rlLossMethod),
    rlKlBeta: z.number().nonnegative().default(0),
    temperature: z.number().min(0.1).max(2).default(RFT_DEFAULTS.temperature),
    topP: z.number().gt(0).max(1).default(RFT_DEFAULTS.topP),
    topK: z.number().int().nonnegative().default(RFT_DEFAULTS.topK),
    responseCandidatesCount: z.number().int().min(2).optional(),
    n: z.number().int().min(2).optional(),
    maxTokens: z.number().int().min(16).max(16384).default(RFT_DEFAULTS.maxTokens),
    maxConcurrentRollouts: positiveInt.default(RFT_DEFAULTS.maxConcurrentRollouts),
    /** Seconds. */
    rolloutTimeout: z.number().positive().default(RFT_DEFAULTS.rolloutTimeout),
    /** Remote environment (`--remote-server-url`): rollouts run there, not here. */
    remoteServerUrl: z.string().url().optional(),
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
