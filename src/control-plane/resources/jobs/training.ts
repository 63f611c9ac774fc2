/**
 * The fields SFT, DPO and RFT jobs share (the `temper create sftj|dpoj|rftj` flags in
 * camelCase) and their resolution: the model to start from (exactly one of baseModel and
 * warmStartFrom), the dataset (READY, of the job's kind), the output model (a free id in the
 * caller's account, random by default), LoRA rank, context length and training shape.
 */
import { z } from 'zod';
import { DATASET_LIMITS, type DatasetKind } from '../../../datasets/validate.js';
import type { Deps } from '../../context.js';
import { ApiError, invalid, notFound } from '../../http/errors.js';
import { randomId } from '../../http/ids.js';
import type { RequestCtx } from '../../http/router.js';
import { activeJobsUsing } from '../common.js';
import { type ModelRef, resolveDataset, resolveModel, resolveOutputModel } from '../refs.js';
import { defaultShape, findShape } from '../training-shapes.js';

const TRAINING_JOBS = [
  'supervisedFineTuningJobs',
  'dpoJobs',
  'reinforcementFineTuningJobs',
] as const;

/**
 * The shortest context a job may train with: a prompt and its answer must fit (a model cannot
 * learn from sequences cut to a token or two; `maxContextLength: 1` used to be accepted and
 * fail in the pod).
 */
export const MIN_CONTEXT_LENGTH = 32;

/** maxContextLength, everywhere a job or trainer takes it (the model's own limit is checked at resolve). */
export const maxContextLengthSchema = z
  .number()
  .int()
  .min(MIN_CONTEXT_LENGTH, `must be at least ${MIN_CONTEXT_LENGTH} tokens`)
  .max(1 << 20);

export const trainingFields = {
  displayName: z.string().max(200).optional(),
  baseModel: z.string().min(1).optional(),
  warmStartFrom: z.string().min(1).optional(),
  dataset: z.string().min(1),
  evaluationDataset: z.string().min(1).optional(),
  outputModel: z.string().min(1).optional(),
  maxContextLength: maxContextLengthSchema.optional(),
  /** Tokens per optimizer step (whole sequences packed). */
  batchSize: z
    .number()
    .int()
    .positive()
    .max(1 << 24)
    .optional(),
  /** Range and message in checkTrainingRanges (and RFT's); finite here. */
  epochs: z.number().finite().optional(),
  learningRate: z.number().optional(),
  learningRateWarmupSteps: z.number().int().nonnegative().optional(),
  gradientAccumulationSteps: z.number().int().positive().optional(),
  loraRank: z.number().int().optional(),
  trainingShape: z.string().min(1).optional(),
  checkpointFrequency: z.number().int().nonnegative().optional(),
  /** Data-order seed; 0 = derived from the job name. */
  seed: z.number().int().nonnegative().optional(),
};

const trainingSchema = z.strictObject(trainingFields);
export type TrainingInput = z.output<typeof trainingSchema>;

/** Defaults shared with the workflow (src/workflows reads the same fields). */
export const DEFAULT_BATCH_TOKENS = 4096;
export const DEFAULT_LORA_RANK = 8;
export const defaultLearningRate = (loraRank: number) => (loraRank > 0 ? 1e-3 : 1e-4);

/** 1e-2, 5e-4: how the spec writes rates in messages. */
export const sci = (x: number) => x.toExponential().replace('e+', 'e');

/** Range problems, gathered so one response names every bad field. */
export class Problems {
  readonly messages: string[] = [];
  check(ok: boolean, message: string): void {
    if (!ok) this.messages.push(message);
  }
  throwIfAny(): void {
    if (this.messages.length)
      throw invalid(
        this.messages.join('; '),
        this.messages.map((message) => ({ message })),
      );
  }
}

export const isPowerOfTwo = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/** How many examples `epochs` passes over `count` examples train (batching.ts: planEpochs). */
export function trainedExamples(count: number, epochs: number): number {
  const whole = Math.floor(epochs);
  return whole * count + Math.round((epochs - whole) * count);
}

export interface ResolvedTraining {
  fields: Record<string, unknown>;
  model: ModelRef;
  loraRank: number;
  exampleCount: number;
}

async function startModel(deps: Deps, ctx: RequestCtx, input: TrainingInput): Promise<ModelRef> {
  if ((input.baseModel === undefined) === (input.warmStartFrom === undefined))
    throw invalid('exactly one of baseModel and warmStartFrom must be set');
  if (input.baseModel !== undefined) {
    const model = await resolveModel(deps, ctx, input.baseModel, 'baseModel');
    if (model.kind === 'HF_PEFT_ADDON')
      throw invalid(`baseModel: ${model.name} is a LoRA adapter: pass it as warmStartFrom instead`);
    return model;
  }
  return resolveModel(deps, ctx, input.warmStartFrom!, 'warmStartFrom');
}

function resolveLoraRank(model: ModelRef, given: number | undefined): number {
  if (model.adapterRank === null) return given ?? DEFAULT_LORA_RANK;
  if (given !== undefined && given !== model.adapterRank)
    throw invalid(
      `loraRank: warmStartFrom ${model.name} is a LoRA adapter of rank ${model.adapterRank}; loraRank must be ${model.adapterRank} (or unset)`,
    );
  return model.adapterRank;
}

function resolveShape(model: ModelRef, loraRank: number, given: string | undefined) {
  const mode = loraRank > 0 ? 'LORA_TRAINER' : 'POLICY_TRAINER';
  if (given === undefined) return model.root ? defaultShape(model.root, mode)?.name : undefined;
  const shape = findShape(given);
  if (!shape) throw notFound(`Training shape '${given}' not found`);
  if (model.root && shape.baseModel !== model.root)
    throw invalid(`trainingShape: ${shape.name} is for ${shape.baseModel}, not ${model.root}`);
  if (shape.trainerMode !== mode)
    throw invalid(
      `trainingShape: ${shape.name} is a ${shape.trainerMode} shape; a job with loraRank ${loraRank} needs a ${mode} shape`,
    );
  return shape.name;
}

/** Resolves the shared fields; `kind` is the dataset kind the job trains on. */
export async function resolveTraining(
  deps: Deps,
  ctx: RequestCtx,
  input: TrainingInput,
  kind: DatasetKind,
): Promise<ResolvedTraining> {
  const model = await startModel(deps, ctx, input);
  const loraRank = resolveLoraRank(model, input.loraRank);
  const dataset = await resolveDataset(deps, ctx, input.dataset, 'dataset', kind);
  const evaluation = input.evaluationDataset
    ? await resolveDataset(deps, ctx, input.evaluationDataset, 'evaluationDataset', kind)
    : undefined;
  const limit = model.contextLength;
  if (input.maxContextLength !== undefined && limit !== null && input.maxContextLength > limit)
    throw invalid(
      `maxContextLength ${input.maxContextLength} exceeds the model's context length ${limit}`,
    );
  const epochs = input.epochs ?? 1;
  if (dataset.exampleCount * epochs > DATASET_LIMITS.maxExampleEpochs)
    throw invalid(
      `${dataset.exampleCount} examples × ${epochs} epochs exceeds the limit of 3,000,000 examples × epochs`,
    );
  // A fraction of an epoch trains round(fraction × examples) of them: none is a job that
  // would "complete" with 0 steps and promote the untrained model.
  if (trainedExamples(dataset.exampleCount, epochs) < 1)
    throw invalid(
      `epochs: ${epochs} epochs of ${dataset.exampleCount} examples trains no example (0 steps): give at least ${sci(1 / Math.max(dataset.exampleCount, 1))}`,
    );
  const trainingShape = resolveShape(model, loraRank, input.trainingShape);
  const outputModel = await resolveOutputModel(deps, ctx, input.outputModel ?? randomId());
  const rivals = await activeJobsUsing(
    deps,
    ctx.account,
    TRAINING_JOBS,
    ['outputModel'],
    outputModel,
  );
  if (rivals.length)
    throw new ApiError(
      'ALREADY_EXISTS',
      `outputModel: ${outputModel} is already the output of ${rivals.join(', ')}`,
    );
  const fields: Record<string, unknown> = {
    ...(input.displayName ? { displayName: input.displayName } : {}),
    ...(input.baseModel !== undefined ? { baseModel: model.name } : { warmStartFrom: model.name }),
    dataset: dataset.name,
    ...(evaluation ? { evaluationDataset: evaluation.name } : {}),
    outputModel,
    ...(input.maxContextLength !== undefined || limit !== null
      ? { maxContextLength: input.maxContextLength ?? limit }
      : {}),
    epochs,
    loraRank,
    ...(trainingShape ? { trainingShape } : {}),
    learningRateWarmupSteps: input.learningRateWarmupSteps ?? 0,
    gradientAccumulationSteps: input.gradientAccumulationSteps ?? 1,
    checkpointFrequency: input.checkpointFrequency ?? 0,
    seed: input.seed ?? 0,
  };
  return { fields, model, loraRank, exampleCount: dataset.exampleCount };
}
