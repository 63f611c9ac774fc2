/**
 * The loop the sft, dpo and orpo recipes share (the cookbook's sft_loop, dpo_loop and
 * orpo_loop differ only in their loss and data): data, the policy restored from the log path,
 * then a checkpoint interval at a time the supervised steps that managed jobs run too
 * (supervised.ts), a resumable checkpoint at each interval, the final one and promotion.
 *
 * Two ways to batch:
 * - `batch_size` examples per step (the cookbook's), each step one forward-backward;
 * - `batch_tokens`: the managed jobs' plan — the dataset validated and rendered by
 *   src/datasets, whole sequences packed into micro-batches of that many tokens per seeded
 *   epoch, `gradient_accumulation_steps` of them per step, and a held-out set
 *   (`evaluation_dataset`, or with `eval_split` a seeded split of `dataset`) whose loss is
 *   logged at every checkpoint and the end. A managed job with the same settings is this
 *   loop, run a checkpoint interval per activity.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import type { PromotedModel, TrainingClient, TrainingDatum } from '../../sdk/index.js';
import { conversationTrainingDatum } from '../../sdk/index.js';
import { messagesSchema } from '../../tokenizers/index.js';
import { readPreferencePairs } from '../dpo/pairs.js';
import { batchSize, gradientAccumulationSteps } from '../fields.js';
import { peakLearningRate, type RecipeBaseConfig } from './base-config.js';
import { startPolicy } from './checkpoints.js';
import type { RecipeClients } from './clients.js';
import {
  batchIndices,
  datasetPath,
  modelContextLength,
  modelDir,
  modelRenderer,
  readRows,
} from './data.js';
import {
  attachReferenceLogprobs,
  type SupervisedMethod,
  type SupervisedSettings,
  trainSupervisedSteps,
} from './supervised.js';
import { buildSupervisedData, type StepBatches } from './supervised-data.js';

/** The batching fields of the supervised recipes' configs. */
export const supervisedBatchShape = {
  /**
   * Pack whole sequences into micro-batches of at most this many tokens (managed jobs'
   * `batchSize`) instead of taking `batch_size` examples per step.
   */
  batch_tokens: batchSize.job.schema.optional(),
  /** Micro-batches per optimizer step (with batch_tokens). */
  gradient_accumulation_steps: gradientAccumulationSteps.schema.default(
    gradientAccumulationSteps.default,
  ),
  /** Held-out JSONL (with batch_tokens): its loss is logged at each checkpoint and the end. */
  evaluation_dataset: z.string().min(1).optional(),
  /** With batch_tokens and no evaluation_dataset: hold out a seeded split of `dataset`. */
  eval_split: z.boolean().default(false),
};

/** Settings a batch_size run cannot honour: refused, naming the field. */
export function checkBatching(
  c: {
    batch_tokens?: number | undefined;
    gradient_accumulation_steps: number;
    evaluation_dataset?: string | undefined;
    eval_split: boolean;
  },
  ctx: z.RefinementCtx,
): void {
  if (c.batch_tokens !== undefined) return;
  const needs = (path: string) =>
    ctx.addIssue({ code: 'custom', path: [path], message: `${path} needs batch_tokens` });
  if (c.gradient_accumulation_steps !== 1) needs('gradient_accumulation_steps');
  if (c.evaluation_dataset !== undefined) needs('evaluation_dataset');
  if (c.eval_split) needs('eval_split');
}

export interface SupervisedRecipeConfig extends RecipeBaseConfig {
  dataset: string;
  epochs: number;
  batch_size: number;
  max_steps?: number | undefined;
  batch_tokens?: number | undefined;
  gradient_accumulation_steps: number;
  evaluation_dataset?: string | undefined;
  eval_split: boolean;
}

export interface SupervisedResult {
  steps: number;
  losses: number[];
  resumedFrom?: string;
  model?: PromotedModel;
}

/** A run's data: the micro-batches of each step, the held-out datums, and the step count. */
interface RunData {
  totalSteps: number;
  batches(step: number): StepBatches;
  eval: TrainingDatum[];
  /** Every datum a DPO reference scores (training, then held-out). */
  referenced: TrainingDatum[];
  /** Examples consumed before `step` (recorded with checkpoints). */
  consumed(step: number): number;
}

const read = (dataset: string) => readFile(datasetPath(dataset), 'utf8');

async function packedData(method: SupervisedMethod, c: SupervisedRecipeConfig): Promise<RunData> {
  const renderer = await modelRenderer(c.base_model);
  const limit = await modelContextLength(modelDir(c.base_model));
  const data = buildSupervisedData(
    {
      method: method.kind,
      maxContextLength: Math.min(c.max_seq_len ?? limit, limit),
      epochs: c.epochs,
      seed: c.seed,
      batchTokens: c.batch_tokens!,
      gradientAccumulationSteps: c.gradient_accumulation_steps,
      carveEvalSplit: c.eval_split,
    },
    await read(c.dataset),
    renderer,
    c.evaluation_dataset ? await read(c.evaluation_dataset) : null,
  );
  return {
    totalSteps: Math.min(c.max_steps ?? data.steps.length, data.steps.length),
    batches: (step) => data.steps[step]!,
    eval: data.eval,
    referenced: [...data.units.flat(), ...data.eval],
    consumed: (step) => step,
  };
}

async function exampleData(method: SupervisedMethod, c: SupervisedRecipeConfig): Promise<RunData> {
  const renderer = await modelRenderer(c.base_model);
  // One unit per example: a conversation (SFT) or a [chosen, rejected] pair.
  let units: TrainingDatum[][];
  if (method.kind === 'sft') {
    const rows = await readRows(c.dataset, z.object({ messages: messagesSchema }).passthrough());
    units = rows.map((r) => [
      conversationTrainingDatum(renderer, r.messages, { maxLength: c.max_seq_len ?? undefined }),
    ]);
  } else {
    const pairs = await readPreferencePairs(c.dataset, renderer, c.max_seq_len ?? undefined);
    units = pairs.map((p) => [p.chosen, p.rejected]);
  }
  const stepsPerEpoch = Math.max(1, Math.floor(units.length / c.batch_size));
  return {
    totalSteps: c.max_steps ?? Math.ceil(c.epochs * stepsPerEpoch),
    batches: (step) => [
      batchIndices(units.length, step * c.batch_size, c.batch_size, c.seed).flatMap(
        (i) => units[i]!,
      ),
    ],
    eval: [],
    referenced: units.flat(),
    consumed: (step) => step * c.batch_size,
  };
}

/** The first checkpoint boundary after `step` (the end when there are no intervals). */
function nextBoundary(interval: number, step: number, total: number): number {
  if (interval <= 0) return total;
  return Math.min((Math.floor(step / interval) + 1) * interval, total);
}

/**
 * Runs a supervised recipe: `method`'s loss over the config's data. DPO's frozen reference
 * (the service's reference client) scores every datum once before training.
 */
export async function runSupervised(
  method: SupervisedMethod,
  config: SupervisedRecipeConfig,
  clients: RecipeClients,
  adam: SupervisedSettings['adam'],
): Promise<SupervisedResult> {
  const { tracker, log } = clients;

  // 1. data
  const data = config.batch_tokens
    ? await packedData(method, config)
    : await exampleData(method, config);

  // 2. the policy, restored from this log path (or init_from_checkpoint); DPO's reference
  const { policy, ckpt, resumed } = await startPolicy(method.kind, config, clients);
  if (method.kind === 'dpo') {
    const reference: TrainingClient = await clients.service.createReferenceClient();
    await attachReferenceLogprobs(data.referenced, (d) => reference.forward(d));
  }
  const settings: SupervisedSettings = {
    method,
    schedule: {
      ...config.lr_schedule,
      peak: peakLearningRate(config),
      totalSteps: data.totalSteps,
    },
    adam,
    evalBatchTokens: config.batch_tokens ?? batchSize.job.default,
  };

  // 3. train, a checkpoint interval at a time
  let step = resumed?.step ?? 0;
  const losses: number[] = [];
  while (step < data.totalSteps) {
    const to = nextBoundary(config.dcp_save_interval, step, data.totalSteps);
    await trainSupervisedSteps(
      settings,
      policy,
      { batches: data.batches, eval: data.eval },
      { from: step, to },
      async (done, metrics) => {
        losses.push(metrics['loss:mean']!);
        await tracker.logMetrics(done, metrics);
        log.info({ step: done, loss: metrics['loss:mean'] }, `${method.kind} step`);
      },
    );
    step = to;
    if (step < data.totalSteps)
      await ckpt.save(step, { resumable: true, promotable: false }, data.consumed(step));
  }

  // 4. final checkpoint, promotion
  return {
    steps: step,
    losses,
    ...(await ckpt.finish(step, data.consumed(step), config, resumed)),
  };
}
