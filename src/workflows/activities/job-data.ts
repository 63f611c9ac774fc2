/**
 * A managed job's training data: its dataset's text (bundled datasets from the repository,
 * uploaded ones from artifacts) arranged per step by the recipes' packed-data builder
 * (src/recipes buildSupervisedData, the same the sft/dpo/orpo recipes use with
 * `batch_tokens`). Hosts rebuild it from the dataset (cached per process) instead of shipping
 * tokens through Temporal.
 */
import { readFile } from 'node:fs/promises';
import { CATALOG_ACCOUNT, catalogDatasetPath } from '../../catalog/bundled.js';
import type { ObjectStore } from '../../checkpoints/object-store/index.js';
import {
  buildSupervisedData,
  type PackedDataSettings,
  type SupervisedData,
} from '../../recipes/index.js';
import type { Renderer } from '../../tokenizers/index.js';
import { loadModelRenderer } from '../../tokenizers/model-files.js';

export type JobData = SupervisedData;

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

const built = new Map<string, JobData>();

/**
 * buildSupervisedData, remembered per (job, settings) in this process: a worker that validated
 * a job (prepare) and then trains it (host) renders its dataset once. Plans are small; jobs few.
 */
export function cachedJobData(
  key: string,
  plan: PackedDataSettings,
  text: string,
  renderer: Renderer,
  evalText: string | null = null,
): JobData {
  const full = `${key}|${JSON.stringify([plan.method, plan.maxContextLength, plan.epochs, plan.seed, plan.batchTokens, plan.gradientAccumulationSteps, evalText !== null])}`;
  let data = built.get(full);
  if (!data) {
    data = buildSupervisedData(plan, text, renderer, evalText);
    if (built.size >= 16) built.delete(built.keys().next().value!);
    built.set(full, data);
  }
  return data;
}
