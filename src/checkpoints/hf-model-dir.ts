// Writes a HuggingFace-layout model directory (config.json, generation_config.json,
// tokenizer files, model.safetensors) atomically: everything goes to a sibling temporary
// directory that is renamed into place, so readers never see a half-written model.
// (A thin face over exports/: see exportHfModel for object stores, sharding and base-model
// passthrough.)
import type { ModelConfig } from '../engine/config.js';
import { writeExportDirectory } from './exports/files.js';
import { hfModelFiles, tensorMapWeights } from './exports/hf.js';
import type { TensorMap } from './safetensors.js';

export interface HfModelDirContents {
  config: ModelConfig;
  tensors: TensorMap;
  dtype?: 'F32' | 'BF16';
  generationConfig?: Record<string, unknown>;
  /** Extra files by name (tokenizer_config.json, tokenizer.json, README.md, ...). */
  files?: Record<string, string | Buffer>;
  /** Shard the weights under this many tensor bytes (default: one model.safetensors up to 5 GB). */
  maxShardBytes?: number;
}

export async function writeHfModelDir(dir: string, contents: HfModelDirContents): Promise<void> {
  const files = await hfModelFiles(contents.config, tensorMapWeights(contents.tensors), {
    dtype: contents.dtype,
    generationConfig: contents.generationConfig,
    files: contents.files,
    maxShardBytes: contents.maxShardBytes,
  });
  await writeExportDirectory(dir, files, { kind: 'hf_base', manifest: false });
}
