/**
 * The fields SFT, DPO, ORPO and RFT jobs share (the `temper create sftj|dpoj|orpoj|rftj` flags
 * in camelCase) and their resolution: the model to start from (exactly one of baseModel and
 * warmStartFrom), the dataset (READY, of the job's kind), the output model (a free id in the
 * caller's account, random by default), LoRA rank, context length and training shape.
 *
 * The training settings themselves (schema, range, message, default) are src/recipes/fields.ts:
 * a body is checked against them once, here, and the stored job carries every value resolved.
 */
import { z } from 'zod';
import { DATASET_LIMITS, type DatasetKind } from '../../../datasets/validate.js';
import {
  documentedIssue,
  fields as F,
  jobSettings,
  optionalShape,
  rftSettings,
  sci,
} from '../../../recipes/index.js';
import { MlflowClient } from '../../../tracking/index.js';
import type { Deps } from '../../context.js';
import { checkTextLengths } from '../../http/body.js';
import { ApiError, invalid, notFound, zodMessage } from '../../http/errors.js';
import { randomId } from '../../http/ids.js';
import type { RequestCtx } from '../../http/router.js';
import { activeJobsUsing } from '../common.js';
import { type ModelRef, resolveDataset, resolveModel, resolveOutputModel } from '../refs.js';
import { defaultShape, findShape } from '../training-shapes.js';

const TRAINING_JOBS = [
  'supervisedFineTuningJobs',
  'dpoJobs',
  'orpoJobs',
  'reinforcementFineTuningJobs',
] as const;

/** Which settings' variants a job takes: RFT has its own ranges and defaults (fields.ts). */
export type SettingsFamily = 'job' | 'rft';

/** The job resource's own fields: what it starts from, trains on and promotes to. */
const resourceFields = {
  displayName: z.string().max(200).optional(),
  baseModel: z.string().min(1).optional(),
  warmStartFrom: z.string().min(1).optional(),
  dataset: z.string().min(1),
  evaluationDataset: z.string().min(1).optional(),
  outputModel: z.string().min(1).optional(),
  trainingShape: z.string().min(1).optional(),
};

/** SFT/DPO/ORPO bodies: the resource fields and the training settings (src/recipes/fields.ts). */
export const trainingFields = {
  ...resourceFields,
  ...optionalShape(jobSettings),
  ...optionalShape(F.jobTrackingSettings),
};
/** RFT bodies: the same resource fields with RFT's settings. */
export const rftTrainingFields = {
  ...resourceFields,
  ...optionalShape(rftSettings),
  ...optionalShape(F.jobTrackingSettings),
};

const trainingSchema = z.strictObject(trainingFields);
export type TrainingInput = z.output<typeof trainingSchema>;

/**
 * A job body parsed with its schema. A setting out of range is refused with the spec's own
 * message, as written (`Learning rate 1e-2 outside valid range [1e-5, 5e-4]`), every bad field
 * named at once; other problems name their field (`batchSize: Invalid input: ...`).
 */
export function parseJobBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  checkTextLengths(body);
  const r = schema.safeParse(body ?? {});
  if (r.success) return r.data;
  const messages = r.error.issues.map((issue) =>
    documentedIssue(issue) ? issue.message : zodMessage(new z.ZodError([issue])),
  );
  throw invalid(
    messages.join('; '),
    r.error.issues.some(documentedIssue) ? messages.map((message) => ({ message })) : undefined,
  );
}

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

function resolveLoraRank(model: ModelRef, given: number | undefined, family: SettingsFamily) {
  if (model.adapterRank === null) return given ?? F.loraRank[family].default;
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

/**
 * Resolves the shared fields and gives every unset setting its default (of `family`);
 * `kind` is the dataset kind the job trains on.
 */
export async function resolveTraining(
  deps: Deps,
  ctx: RequestCtx,
  input: TrainingInput,
  kind: DatasetKind,
  family: SettingsFamily = 'job',
): Promise<ResolvedTraining> {
  const model = await startModel(deps, ctx, input);
  const loraRank = resolveLoraRank(model, input.loraRank, family);
  const dataset = await resolveDataset(deps, ctx, input.dataset, 'dataset', kind);
  const evaluation = input.evaluationDataset
    ? await resolveDataset(deps, ctx, input.evaluationDataset, 'evaluationDataset', kind)
    : undefined;
  const limit = model.contextLength;
  if (input.maxContextLength !== undefined && limit !== null && input.maxContextLength > limit)
    throw invalid(
      `maxContextLength ${input.maxContextLength} exceeds the model's context length ${limit}`,
    );
  const epochs = input.epochs ?? F.epochs[family].default;
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
  // Refused here, not when the pod builds its model: a job that can never start leaves no row.
  const dtypeIssue = F.baseDtypeIssue(input.baseDtype, loraRank);
  if (dtypeIssue) throw invalid(dtypeIssue);
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
    learningRateWarmupSteps: input.learningRateWarmupSteps ?? F.learningRateWarmupSteps.default,
    gradientAccumulationSteps:
      input.gradientAccumulationSteps ?? F.gradientAccumulationSteps.default,
    checkpointFrequency: input.checkpointFrequency ?? F.checkpointFrequency.default,
    seed: input.seed ?? F.seed.default,
    baseDtype: input.baseDtype ?? F.baseDtype.default,
    recompute: input.recompute ?? F.recompute.default,
    batchSize: input.batchSize ?? F.batchSize[family].default,
    learningRate:
      input.learningRate ??
      (family === 'rft' ? F.learningRate.rft.default : F.learningRate.job.default(loraRank)),
  };
  // An MLflow server that cannot be reached is refused here, as a recipe refuses it at its
  // start (nothing trains untracked by surprise); later, while the job runs, a tracking
  // failure is only a warning on the job.
  if (input.mlflowTrackingUri !== undefined) {
    const experiment = input.mlflowExperimentName ?? F.mlflowExperimentNameDefault;
    await new MlflowClient(input.mlflowTrackingUri, (url, init) =>
      fetch(url, { ...init, signal: AbortSignal.timeout(10_000) }),
    )
      .experimentId(experiment)
      .catch((error: Error) => {
        throw invalid(`mlflowTrackingUri: ${error.message}`);
      });
    Object.assign(fields, {
      mlflowTrackingUri: input.mlflowTrackingUri,
      mlflowExperimentName: experiment,
      ...(input.mlflowRunName !== undefined ? { mlflowRunName: input.mlflowRunName } : {}),
    });
  } else if (input.mlflowExperimentName !== undefined || input.mlflowRunName !== undefined)
    throw invalid('mlflowExperimentName and mlflowRunName need mlflowTrackingUri');
  return { fields, model, loraRank, exampleCount: dataset.exampleCount };
}
