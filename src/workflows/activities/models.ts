/**
 * Where a model's files are on this host. Catalog models (account `temper`) ship in the
 * repository; promoted models live in the checkpoint store under accounts/{a}/models/{id}/,
 * which for the embedded default is a directory (file://). Object-store models (s3://, gs://)
 * would be mirrored to a local cache first; that is not built yet and fails clearly.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { CATALOG_ACCOUNT, catalogModelDir } from '../../catalog/bundled.js';
import { fileUrlToRoot } from '../../checkpoints/object-store/index.js';
import { MODEL_FILE } from '../../checkpoints/promotion.js';

const MODEL_NAME = /^accounts\/([a-z][a-z0-9-]*)\/models\/([a-z][a-z0-9-]*)$/;

export interface ResolvedModel {
  /** HF-layout directory (the base weights, or a PEFT adapter's files). */
  dir: string;
  /** A LoRA add-on: train on `baseDir` and load the adapter from `dir`. */
  adapter: { baseModel: string; baseDir: string } | null;
}

const modelFileSchema = z
  .object({
    kind: z.string().optional(),
    baseModel: z.string().nullable().optional(),
  })
  .passthrough();

export async function resolveModel(name: string, checkpointUrl: string): Promise<ResolvedModel> {
  const m = MODEL_NAME.exec(name);
  if (!m)
    throw new Error(`'${name}' is not a model name of the form accounts/{account}/models/{id}`);
  if (m[1] === CATALOG_ACCOUNT) return { dir: catalogModelDir(name), adapter: null };
  if (!checkpointUrl.startsWith('file:'))
    throw new Error(
      `model ${name} is in ${checkpointUrl}; trainers read promoted models from a file:// store only (object-store models are not mirrored yet)`,
    );
  const dir = join(fileUrlToRoot(checkpointUrl), name);
  let meta: z.output<typeof modelFileSchema>;
  try {
    meta = modelFileSchema.parse(JSON.parse(await readFile(join(dir, MODEL_FILE), 'utf8')));
  } catch (error) {
    throw new Error(`model ${name} is not available: ${(error as Error).message}`);
  }
  if (meta.kind === 'HF_PEFT_ADDON') {
    if (!meta.baseModel) throw new Error(`LoRA model ${name} does not record its base model`);
    const base = await resolveModel(meta.baseModel, checkpointUrl);
    return { dir, adapter: { baseModel: meta.baseModel, baseDir: base.dir } };
  }
  return { dir, adapter: null };
}

/** max_position_embeddings of an HF config.json directory (the recipes' one reading). */
export { modelContextLength } from '../../recipes/index.js';
