/**
 * Recipe data: JSONL rows (errors name file and line), the model's renderer, and a data order
 * that is a pure function of (seed, examples consumed) — so a resumed run, given the count
 * from dataloader.json, sees exactly the batches the uninterrupted run would have.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { z } from 'zod';
import { catalogDatasetPath, catalogModelDir } from '../../catalog/bundled.js';
import { readJsonl } from '../../datasets/jsonl.js';
import { loadModelRenderer, type Renderer } from '../../tokenizers/index.js';
import { seededRandom } from '../../util/seeded-random.js';

/** An HF-layout directory for a catalog model name or a path. */
export function modelDir(model: string): string {
  return model.startsWith('accounts/') ? catalogModelDir(model) : model;
}

export function datasetPath(dataset: string): string {
  return dataset.startsWith('accounts/') ? catalogDatasetPath(dataset) : dataset;
}

export function readRows<T extends z.ZodType>(dataset: string, schema: T): Promise<z.output<T>[]> {
  return readJsonl(datasetPath(dataset), schema);
}

export function modelRenderer(model: string): Promise<Renderer> {
  return loadModelRenderer(modelDir(model));
}

/** The order of epoch `epoch` over n examples: a Fisher-Yates shuffle seeded by (seed, epoch). */
function epochOrder(n: number, seed: number, epoch: number): number[] {
  const rand = seededRandom(seed * 1_000_003 + epoch);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  return order;
}

/** Indices of the `size` examples that follow the first `consumed` (epochs reshuffled). */
export function batchIndices(n: number, consumed: number, size: number, seed: number): number[] {
  const out: number[] = [];
  let epoch = -1;
  let order: number[] = [];
  for (let k = consumed; k < consumed + size; k++) {
    const e = Math.floor(k / n);
    if (e !== epoch) {
      epoch = e;
      order = epochOrder(n, seed, e);
    }
    out.push(order[k % n] as number);
  }
  return out;
}

/** max_position_embeddings of an HF config.json directory (2048 when it gives none). */
export async function modelContextLength(dir: string): Promise<number> {
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as {
    max_position_embeddings?: number;
  };
  return config.max_position_embeddings ?? 2048;
}
