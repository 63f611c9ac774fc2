/**
 * A managed job's training data, step by step. Deterministic by construction: the same plan
 * always yields the same batches for the same step, which is what lets a relaunched trainer
 * resume from a checkpoint and reproduce an uninterrupted run bitwise. Hosts rebuild it from
 * the dataset (cached per process) instead of shipping tokens through Temporal.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { CATALOG_ACCOUNT, catalogDatasetPath } from '../../catalog/bundled.js';
import type { ObjectStore } from '../../checkpoints/object-store/index.js';
import { parseJsonl } from '../../datasets/jsonl.js';
import { conversationTrainingDatum } from '../../sdk/datums.js';
import type { TrainingDatum } from '../../sdk/types.js';
import { getRenderer, messagesSchema, type Renderer } from '../../tokenizers/index.js';
import { loadModelTokenizer, modelRendererName } from '../../tokenizers/model-files.js';
import { seededRandom } from '../../util/seeded-random.js';
import type { TrainingPlan } from '../types.js';

/** One optimizer step: its micro-batches (gradient accumulation), each a list of datums. */
export type StepBatches = TrainingDatum[][];

export interface JobData {
  /** Single sequences (SFT) or [chosen, rejected] pairs (DPO), in dataset order. */
  units: TrainingDatum[][];
  /** The same datum objects, arranged per optimizer step. */
  steps: StepBatches[];
}

/** The dataset's JSONL: bundled datasets from the repository, uploaded ones from artifacts. */
export async function readDatasetText(dataset: string, artifacts: ObjectStore): Promise<string> {
  const m = /^accounts\/([a-z][a-z0-9-]*)\/datasets\/([a-z][a-z0-9-]*)$/.exec(dataset);
  if (!m) throw new Error(`'${dataset}' is not a dataset name accounts/{account}/datasets/{id}`);
  if (m[1] === CATALOG_ACCOUNT) return readFile(catalogDatasetPath(dataset), 'utf8');
  return (await artifacts.get(`${dataset}/data.jsonl`)).toString('utf8');
}

export async function modelRenderer(modelDir: string): Promise<Renderer> {
  return getRenderer(await modelRendererName(modelDir), await loadModelTokenizer(modelDir));
}

const sftRow = z.object({ messages: messagesSchema }).passthrough();
const dpoRow = z.union([
  z
    .object({
      input: z.object({ messages: messagesSchema }).passthrough(),
      preferred_output: messagesSchema,
      non_preferred_output: messagesSchema,
    })
    .passthrough()
    .transform((r) => ({
      prompt: r.input.messages,
      chosen: r.preferred_output,
      rejected: r.non_preferred_output,
    })),
  z
    .object({
      chosen: z.object({ messages: messagesSchema }).passthrough(),
      rejected: z.object({ messages: messagesSchema }).passthrough(),
    })
    .passthrough()
    .transform((r) => ({ prompt: [], chosen: r.chosen.messages, rejected: r.rejected.messages })),
]);

/** Training units of the dataset: one datum (SFT) or a [chosen, rejected] pair (DPO). */
export function renderUnits(
  plan: Pick<TrainingPlan, 'method' | 'maxContextLength' | 'dataset'>,
  text: string,
  renderer: Renderer,
): TrainingDatum[][] {
  const opts = { maxLength: plan.maxContextLength };
  if (plan.method === 'sft') {
    return parseJsonl(text, sftRow, plan.dataset).map((row) => [
      conversationTrainingDatum(renderer, row.messages, opts),
    ]);
  }
  return parseJsonl(text, dpoRow, plan.dataset).map((row) => [
    conversationTrainingDatum(renderer, [...row.prompt, ...row.chosen], opts),
    conversationTrainingDatum(renderer, [...row.prompt, ...row.rejected], opts),
  ]);
}

function unitTokens(unit: readonly TrainingDatum[]): number {
  let n = 0;
  for (const d of unit) {
    const input = d.modelInput;
    n += Array.isArray(input) || ArrayBuffer.isView(input) ? input.length : countTokens(input);
  }
  return n;
}

function countTokens(input: TrainingDatum['modelInput']): number {
  const chunks = (input as { chunks: { tokens: ArrayLike<number> }[] }).chunks;
  return chunks.reduce((n, c) => n + c.tokens.length, 0);
}

/** Example order over `epochs` (fractional: the last epoch is cut), reshuffled per epoch. */
export function epochOrder(unitCount: number, epochs: number, seed: number): number[] {
  const total = Math.max(1, Math.round(unitCount * epochs));
  const rand = seededRandom(seed);
  const order: number[] = [];
  while (order.length < total) {
    const epoch = Array.from({ length: unitCount }, (_, i) => i);
    for (let i = epoch.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [epoch[i], epoch[j]] = [epoch[j]!, epoch[i]!];
    }
    order.push(...epoch.slice(0, total - order.length));
  }
  return order;
}

/**
 * Packs units in order into micro-batches of at most `batchTokens` tokens (a unit larger
 * than the budget goes alone), then groups `accumulation` micro-batches per optimizer step.
 */
export function packSteps(
  units: readonly TrainingDatum[][],
  order: readonly number[],
  batchTokens: number,
  accumulation: number,
): StepBatches[] {
  const micro: TrainingDatum[][] = [];
  let current: TrainingDatum[] = [];
  let tokens = 0;
  for (const index of order) {
    const unit = units[index]!;
    const n = unitTokens(unit);
    if (current.length > 0 && tokens + n > batchTokens) {
      micro.push(current);
      current = [];
      tokens = 0;
    }
    current.push(...unit);
    tokens += n;
  }
  if (current.length > 0) micro.push(current);
  const steps: StepBatches[] = [];
  for (let i = 0; i < micro.length; i += accumulation) steps.push(micro.slice(i, i + accumulation));
  return steps;
}

export function buildJobData(
  plan: Pick<
    TrainingPlan,
    | 'method'
    | 'maxContextLength'
    | 'dataset'
    | 'epochs'
    | 'seed'
    | 'batchTokens'
    | 'gradientAccumulationSteps'
  >,
  text: string,
  renderer: Renderer,
): JobData {
  const units = renderUnits(plan, text, renderer);
  const order = epochOrder(units.length, plan.epochs, plan.seed);
  const steps = packSteps(units, order, plan.batchTokens, plan.gradientAccumulationSteps);
  return { units, steps };
}
