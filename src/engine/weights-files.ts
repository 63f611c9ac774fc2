// Finds the weight files of an HF-layout model directory: the shards named by
// model.safetensors.index.json when present, else model.safetensors or model-*-of-*.safetensors
// shards (other safetensors files, such as adapters, are not base weights).
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';

const WEIGHT_FILE = /^model(-\d+-of-\d+)?\.safetensors$/;
const indexSchema = z.object({ weight_map: z.record(z.string(), z.string()) });

export async function listWeightFiles(dir: string): Promise<string[]> {
  const index = join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) {
    const parsed = indexSchema.safeParse(JSON.parse(await readFile(index, 'utf8')));
    if (!parsed.success) throw new Error(`${index}: expected {"weight_map": {tensor: file}}`);
    return [...new Set(Object.values(parsed.data.weight_map))].sort().map((f) => join(dir, f));
  }
  const files = (await readdir(dir)).filter((f) => WEIGHT_FILE.test(f)).sort();
  if (files.length === 0)
    throw new Error(`${dir}: no weight files (model.safetensors or model-*-of-*.safetensors)`);
  return files.map((f) => join(dir, f));
}
