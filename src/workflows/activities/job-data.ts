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
import { dpoPairs, parseDataset, planSteps, type Sized, sftDatums } from '../../datasets/index.js';
import type { TrainingDatum } from '../../sdk/types.js';
import { toTrainingDatum } from '../../sdk/types.js';
import { getRenderer, type Renderer } from '../../tokenizers/index.js';
import { loadModelTokenizer, modelRendererName } from '../../tokenizers/model-files.js';
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

type DataPlan = Pick<
  TrainingPlan,
  'method' | 'maxContextLength' | 'epochs' | 'seed' | 'batchTokens' | 'gradientAccumulationSteps'
>;

/** Validated, rendered units and their sizes for packing. */
function renderUnits(plan: DataPlan, text: string, renderer: Renderer) {
  const opts = { maxContextLength: plan.maxContextLength };
  if (plan.method === 'sft') {
    const examples = sftDatums(parseDataset('sft', text).rows, renderer, opts);
    return {
      units: examples.map((e) => [toTrainingDatum(e.datum)]),
      sizes: examples as Sized[],
    };
  }
  const pairs = dpoPairs(parseDataset('dpo', text).rows, renderer, opts);
  return {
    units: pairs.map((p) => [toTrainingDatum(p.chosen), toTrainingDatum(p.rejected)]),
    sizes: pairs as Sized[],
  };
}

/**
 * Units packed into micro-batches of `batchTokens` (per epoch, seeded order), then
 * `gradientAccumulationSteps` consecutive micro-batches per optimizer step. Throws the
 * dataset's DatasetValidationError (with its line number) on bad data.
 */
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
): JobData {
  const full = `${key}|${JSON.stringify([plan.method, plan.maxContextLength, plan.epochs, plan.seed, plan.batchTokens, plan.gradientAccumulationSteps])}`;
  let data = built.get(full);
  if (!data) {
    data = buildJobData(plan, text, renderer);
    if (built.size >= 16) built.delete(built.keys().next().value!);
    built.set(full, data);
  }
  return data;
}

export function buildJobData(plan: DataPlan, text: string, renderer: Renderer): JobData {
  const { units, sizes } = renderUnits(plan, text, renderer);
  const planned = planSteps(sizes, {
    epochs: plan.epochs,
    seed: plan.seed,
    batchTokens: plan.batchTokens,
  });
  const micro = planned.steps.map((s) => s.indices.flatMap((i) => units[i]!));
  const steps: StepBatches[] = [];
  const k = plan.gradientAccumulationSteps;
  for (let i = 0; i < micro.length; i += k) steps.push(micro.slice(i, i + k));
  return { units, steps };
}
