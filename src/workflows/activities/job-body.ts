/**
 * The fields of a stored job that the workflow reads. The REST boundary checked every setting
 * against its one schema (src/recipes/fields.ts) and resolved every default, so here a setting
 * is read as the type it has (a number, a whole number) and never checked against a range
 * again; a field a row lacks (a row written by an older control plane) takes the setting's
 * own default from the same definition. A row edited into the wrong shape still fails loudly.
 */
import { z } from 'zod';
import { fields as F } from '../../recipes/index.js';

/** A stored setting: a number (its range was checked where the job was created). */
const number = z.number();
/** A stored setting that counts something. */
const count = z.number().int();
/** A stored setting that names something. */
const name = z.string();

export const trainingJobBodySchema = z
  .object({
    state: z.string().optional(),
    baseModel: z.string().min(1).optional(),
    warmStartFrom: z.string().min(1).optional(),
    dataset: z.string().min(1),
    outputModel: z.string().min(1).optional(),
    evaluationDataset: z.string().optional(),
    maxContextLength: count.optional(),
    /** Tokens per optimizer step (micro-batch; packed whole sequences). */
    batchSize: count.optional(),
    epochs: number.default(F.epochs.job.default),
    /** Unset: the method's default for the job's LoRA rank (prepareTrainingJob). */
    learningRate: number.optional(),
    learningRateWarmupSteps: count.default(F.learningRateWarmupSteps.default),
    gradientAccumulationSteps: count.default(F.gradientAccumulationSteps.default),
    loraRank: count.default(F.loraRank.job.default),
    checkpointFrequency: count.default(F.checkpointFrequency.default),
    /** DPO. */
    beta: number.default(F.dpoBeta.default),
    /** ORPO. */
    orpoLambda: number.default(F.orpoLambda.default),
    seed: count.default(F.seed.default),
    /** The pod's engine settings (an enum and a flag: their own schemas are their types). */
    baseDtype: F.baseDtype.schema.default(F.baseDtype.default),
    recompute: F.recompute.schema.default(F.recompute.default),
    /** MLflow (checked where the job was created; the experiment's default resolved there). */
    mlflowTrackingUri: name.optional(),
    mlflowExperimentName: name.optional(),
    mlflowRunName: name.optional(),
    /** Written by the workflow: where a resumed job continues. */
    lastCheckpoint: z.object({ checkpoint: z.string(), step: z.number().int() }).optional(),
  })
  .passthrough()
  .refine((b) => (b.baseModel === undefined) !== (b.warmStartFrom === undefined), {
    message: 'exactly one of baseModel and warmStartFrom must be set',
  });

export type TrainingJobBody = z.output<typeof trainingJobBodySchema>;

/** The RFT-specific fields (managed-jobs.md, RFT), with the settings' own defaults. */
export const rftJobFieldsSchema = z
  .object({
    evaluator: z.string().min(1),
    chunkSize: count.default(F.chunkSize.default),
    /** The loss method's name and KL beta are checked by src/losses when the plan is made. */
    rlLossMethod: name.default(F.rlLossMethod.default),
    rlKlBeta: number.default(F.rlKlBeta.default),
    temperature: number.default(F.temperature.default),
    topP: number.default(F.topP.default),
    topK: count.default(F.topK.default),
    responseCandidatesCount: count.optional(),
    n: count.optional(),
    maxTokens: count.default(F.maxTokens.default),
    maxConcurrentRollouts: count.default(F.maxConcurrentRollouts.default),
    /** Seconds. */
    rolloutTimeout: number.default(F.rolloutTimeout.default),
    /** Remote environment (`--remote-server-url`): rollouts run on the user's server. */
    remoteServerUrl: z.string().url().optional(),
  })
  .passthrough();

export type RftJobFields = z.output<typeof rftJobFieldsSchema>;

/** The fields of an rlorTrainerJob the workflow reads (training-api.md, Trainer jobs). */
export const trainerJobBodySchema = z
  .object({
    baseModel: z.string().min(1),
    loraRank: count.default(F.loraRank.trainer.default),
    forwardOnly: z.boolean().default(false),
    /** Protobuf JSON duration ("1800s"); 0 or unset = 60 minutes. */
    inactivityTimeout: z.string().optional(),
    disableInactivityCleanup: z.boolean().default(false),
    /** The pod's engine settings (an enum and a flag: their own schemas are their types). */
    baseDtype: F.baseDtype.schema.default(F.baseDtype.default),
    recompute: F.recompute.schema.default(F.recompute.default),
  })
  .passthrough();
