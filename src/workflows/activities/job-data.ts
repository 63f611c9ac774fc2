/**
 * A managed job's training data, step by step. Deterministic by construction: the same plan
 * always yields the same batches for the same step, which is what lets a relaunched trainer
 * resume from a checkpoint and reproduce an uninterrupted run bitwise. Hosts rebuild it from
 * the dataset (cached per process) instead of shipping tokens through Temporal. Validation,
 * rendering and packing are src/datasets'; this module only arranges the result per step.
 */
import { readFile } from 'node:fs/promises';
import { CATALOG_ACCOUNT, catalogDatasetPath } from '../../catalog/bundled.js';
import type { ObjectStore } from '../../checkpoints/object-store/index.js';
import {
  carveEvalSplit,
  dpoPairs,
  parseDataset,
  planSteps,
  type Sized,
  sftDatums,
} from '../../datasets/index.js';
import type { TrainingDatum } from '../../sdk/types.js';
import { toTrainingDatum } from '../../sdk/types.js';
import type { Renderer } from '../../tokenizers/index.js';
import { loadModelRenderer } from '../../tokenizers/model-files.js';
import type { TrainingPlan } from '../types.js';

/** One optimizer step: its micro-batches (gradient accumulation), each a list of datums. */
export type StepBatches = TrainingDatum[][];

export interface JobData {
  /** Single sequences (SFT) or [chosen, rejected] pairs (DPO), in dataset order. */
  units: TrainingDatum[][];
  /** The same datum objects, arranged per optimizer step. */
  steps: StepBatches[];
  /** Held-out datums (SFT sequences; DPO [chosen, rejected] pairs): evaluated at segment ends. */
  eval: TrainingDatum[];
}

/** The dataset's JSONL: bundled datasets from the repository, uploaded ones from artifacts. */
export async function readDatasetText(dataset: string, artifacts: ObjectStore): Promise<string> {
  const m = /^accounts\/([a-z][a-z0-9-]*)\/datasets\/([a-z][a-z0-9-]*)$/.exec(dataset);
  if (!m) throw new Error(`'${dataset}' is not a dataset name accounts/{account}/datasets/{id}`);
  if (m[1] === CATALOG_ACCOUNT) return readFile(catalogDatasetPath(dataset), 'utf8');
  return (await artifacts.get(`${dataset}/data.jsonl`)).toString('utf8');
}

/** The model's renderer: a built-in one where its files name it, else its own chat template. */
export async function modelRenderer(modelDir: string): Promise<Renderer> {
  return loadModelRenderer(modelDir);
}

type DataPlan = Pick<
  TrainingPlan,
  'method' | 'maxContextLength' | 'epochs' | 'seed' | 'batchTokens' | 'gradientAccumulationSteps'
>;

interface Rendered {
  /** One datum (SFT) or a [chosen, rejected] pair (DPO) per unit. */
  units: TrainingDatum[][];
  sizes: Sized[];
  /** The source row of each unit (unrolled conversations give several units per row). */
  rowOf: number[];
  rowCount: number;
}

/** Validated, rendered units and their sizes for packing. */
function renderUnits(plan: DataPlan, text: string, renderer: Renderer): Rendered {
  const opts = { maxContextLength: plan.maxContextLength };
  if (plan.method === 'sft') {
    const rows = parseDataset('sft', text).rows;
    const examples = sftDatums(rows, renderer, opts);
    return {
      units: examples.map((e) => [toTrainingDatum(e.datum)]),
      sizes: examples as Sized[],
      rowOf: examples.map((e) => e.rowIndex),
      rowCount: rows.length,
    };
  }
  const rows = parseDataset('dpo', text).rows;
  const pairs = dpoPairs(rows, renderer, opts);
  return {
    units: pairs.map((p) => [toTrainingDatum(p.chosen), toTrainingDatum(p.rejected)]),
    sizes: pairs as Sized[],
    rowOf: pairs.map((p) => p.rowIndex),
    rowCount: rows.length,
  };
}

/**
 * The held-out set: the evaluation dataset when the job names one, else rows carved out of
 * the training set (src/datasets carveEvalSplit, seeded by the job; none under 10 rows).
 */
function splitEval(train: Rendered, evalSet: Rendered | null, seed: number) {
  const all = train.units.map((_, i) => i);
  if (evalSet) return { keep: all, evalUnits: evalSet.units };
  const held = new Set(carveEvalSplit(train.rowCount, { seed }).eval);
  return {
    keep: all.filter((i) => !held.has(train.rowOf[i]!)),
    evalUnits: all.filter((i) => held.has(train.rowOf[i]!)).map((i) => train.units[i]!),
  };
}

const built = new Map<string, JobData>();

/**
 * buildJobData, remembered per (job, plan) in this process: a worker that validated a job
 * (prepare) and then trains it (host) renders its dataset once. Plans are small; jobs few.
 */
export function cachedJobData(
  key: string,
  plan: DataPlan,
  text: string,
  renderer: Renderer,
  evalText: string | null = null,
): JobData {
  const full = `${key}|${JSON.stringify([plan.method, plan.maxContextLength, plan.epochs, plan.seed, plan.batchTokens, plan.gradientAccumulationSteps, evalText !== null])}`;
  let data = built.get(full);
  if (!data) {
    data = buildJobData(plan, text, renderer, evalText);
    if (built.size >= 16) built.delete(built.keys().next().value!);
    built.set(full, data);
  }
  return data;
}

/**
 * Units packed into micro-batches of `batchTokens` (per epoch, seeded order), then
 * `gradientAccumulationSteps` consecutive micro-batches per optimizer step. Throws the
 * dataset's DatasetValidationError (with its line number) on bad data.
 */
export function buildJobData(
  plan: DataPlan,
  text: string,
  renderer: Renderer,
  evalText: string | null = null,
): JobData {
  const train = renderUnits(plan, text, renderer);
  const evalSet = evalText === null ? null : renderUnits(plan, evalText, renderer);
  const { keep, evalUnits } = splitEval(train, evalSet, plan.seed);
  const units = keep.map((i) => train.units[i]!);
  const planned = planSteps(
    keep.map((i) => train.sizes[i]!),
    { epochs: plan.epochs, seed: plan.seed, batchTokens: plan.batchTokens },
  );
  const micro = planned.steps.map((s) => s.indices.flatMap((i) => units[i]!));
  const steps: StepBatches[] = [];
  const k = plan.gradientAccumulationSteps;
  for (let i = 0; i < micro.length; i += k) steps.push(micro.slice(i, i + k));
  return { units, steps, eval: evalUnits.flat() };
}
