// Writes a HuggingFace-layout model directory (config.json, generation_config.json,
// tokenizer files, model.safetensors) atomically: everything goes to a sibling temporary
// directory that is renamed into place, so readers never see a half-written model.
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { ModelConfig } from '../engine/config.js';
import { toHfConfig } from '../engine/config.js';
import { serializeSafetensors, type TensorMap } from './safetensors.js';

export interface HfModelDirContents {
  config: ModelConfig;
  tensors: TensorMap;
  dtype?: 'F32' | 'BF16';
  generationConfig?: Record<string, unknown>;
  /** Extra files by name (tokenizer_config.json, tokenizer.json, README.md, ...). */
  files?: Record<string, string | Buffer>;
}

export async function writeHfModelDir(dir: string, contents: HfModelDirContents): Promise<void> {
  const tmp = join(dirname(dir), `.${basename(dir)}.tmp-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    await writeFile(
      join(tmp, 'config.json'),
      `${JSON.stringify(toHfConfig(contents.config), null, 2)}\n`,
    );
    if (contents.generationConfig)
      await writeFile(
        join(tmp, 'generation_config.json'),
        `${JSON.stringify(contents.generationConfig, null, 2)}\n`,
      );
    for (const [name, body] of Object.entries(contents.files ?? {}))
      await writeFile(join(tmp, name), body);
    await writeFile(
      join(tmp, 'model.safetensors'),
      serializeSafetensors(contents.tensors, {
        dtype: contents.dtype ?? 'F32',
        metadata: { format: 'pt' },
      }),
    );
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
