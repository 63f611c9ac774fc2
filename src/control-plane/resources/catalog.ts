/**
 * The public catalog account `temper`: the models and datasets bundled in the repository
 * (src/catalog/bundled.ts), served read-only to every key. They are read from the repository
 * rather than copied into the store, so the catalog is exactly what ships with this version
 * (the workflows read the same files: catalogModelDir, catalogDatasetPath).
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import {
  BUNDLED_MODEL,
  CATALOG_ACCOUNT,
  catalogDatasetPath,
  catalogModelDir,
  DEMO_DATASET,
} from '../../catalog/bundled.js';
import { MODEL_FILE } from '../../checkpoints/promotion.js';
import { validateDataset } from '../../datasets/validate.js';
import type { Resource } from './common.js';

const configSchema = z.looseObject({ max_position_embeddings: z.number().int().positive() });
const modelFileSchema = z.looseObject({
  kind: z.string(),
  description: z.string().optional(),
  parameters: z.number().optional(),
});

export interface CatalogModel extends Resource {
  kind: string;
  contextLength: number;
}

async function loadModel(name: string, description: string): Promise<CatalogModel> {
  const dir = catalogModelDir(name);
  const meta = modelFileSchema.parse(JSON.parse(await readFile(join(dir, MODEL_FILE), 'utf8')));
  const config = configSchema.parse(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')));
  const time = (await stat(join(dir, MODEL_FILE))).mtime.toISOString();
  return {
    name,
    displayName: name.split('/').pop()!,
    description: meta.description ?? description,
    kind: meta.kind,
    state: 'READY',
    public: true,
    baseModel: null,
    peftDetails: null,
    contextLength: config.max_position_embeddings,
    parameterCount: meta.parameters ?? null,
    createTime: time,
    updateTime: time,
  };
}

async function loadDataset(name: string, description: string): Promise<Resource> {
  const path = catalogDatasetPath(name);
  const bytes = new Uint8Array(await readFile(path));
  const summary = validateDataset('sft', bytes);
  const time = (await stat(path)).mtime.toISOString();
  return {
    name,
    displayName: name.split('/').pop()!,
    description,
    state: 'READY',
    kind: summary.kind,
    exampleCount: summary.exampleCount,
    public: true,
    sizeBytes: bytes.length,
    summary,
    createTime: time,
    updateTime: time,
  };
}

let models: Promise<CatalogModel[]> | undefined;
let datasets: Promise<Resource[]> | undefined;

/** Every catalog model, oldest first (loaded once). */
export function catalogModels(): Promise<CatalogModel[]> {
  models ??= Promise.all([loadModel(BUNDLED_MODEL.name, BUNDLED_MODEL.description)]);
  return models;
}

export function catalogDatasets(): Promise<Resource[]> {
  datasets ??= Promise.all([loadDataset(DEMO_DATASET.name, DEMO_DATASET.description)]);
  return datasets;
}

export async function catalogModel(name: string): Promise<CatalogModel | undefined> {
  return (await catalogModels()).find((m) => m.name === name);
}

export async function catalogDataset(name: string): Promise<Resource | undefined> {
  return (await catalogDatasets()).find((d) => d.name === name);
}

export const isCatalog = (account: string) => account === CATALOG_ACCOUNT;
