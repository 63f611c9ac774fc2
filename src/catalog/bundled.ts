// The models that ship inside the repository under the public, read-only catalog account
// `temper` (accounts/temper/models/{id}), stored in HF layout under catalog/.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CATALOG_ACCOUNT = 'temper';

export const BUNDLED_MODEL = {
  id: 'byte-lm-3m',
  name: `accounts/${CATALOG_ACCOUNT}/models/byte-lm-3m`,
  description:
    'Byte-level Llama/Qwen3-style base model (~3M parameters, tied embeddings, q/k norm) pretrained on a synthetic corpus of arithmetic, templated sentences, facts and simple chat turns.',
} as const;

export const DEMO_DATASET = {
  id: 'sure-answers-sft',
  name: `accounts/${CATALOG_ACCOUNT}/datasets/sure-answers-sft`,
  description:
    'Capital and colour questions answered in a chatty style ("Sure! The capital of France is Paris. Anything else?") for the demo fine-tune.',
} as const;

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'catalog')) && existsSync(join(dir, 'package.json'))) return dir;
    dir = resolve(dir, '..');
  }
  throw new Error('cannot find the temper repository root (catalog/ next to package.json)');
}

/** Directory of a catalog model: catalog/accounts/{account}/models/{id}. */
export function catalogModelDir(name: string): string {
  const m = /^accounts\/([a-z][a-z0-9-]*)\/models\/([a-z][a-z0-9-]*)$/.exec(name);
  if (!m)
    throw new Error(`'${name}' is not a model name of the form accounts/{account}/models/{id}`);
  return join(repoRoot(), 'catalog', 'accounts', m[1]!, 'models', m[2]!);
}

export function bundledModelDir(): string {
  return catalogModelDir(BUNDLED_MODEL.name);
}

/** JSONL file of a catalog dataset: catalog/accounts/{account}/datasets/{id}.jsonl. */
export function catalogDatasetPath(name: string): string {
  const m = /^accounts\/([a-z][a-z0-9-]*)\/datasets\/([a-z][a-z0-9-]*)$/.exec(name);
  if (!m)
    throw new Error(`'${name}' is not a dataset name of the form accounts/{account}/datasets/{id}`);
  return join(repoRoot(), 'catalog', 'accounts', m[1]!, 'datasets', `${m[2]!}.jsonl`);
}
