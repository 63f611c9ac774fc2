// Loads the PyTorch/transformers/PEFT reference cases in test/fixtures/parity (see
// scripts/reference/README.md for how they are made).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseSafetensors, parseSafetensorsF64 } from '../../src/checkpoints/safetensors.js';
import { parseHfConfig } from '../../src/engine/config.js';
import { type LoraTarget, TransformerModel } from '../../src/engine/model.js';

export const PARITY_DIR = join(import.meta.dirname, '..', 'fixtures', 'parity');
export const PARITY_CASES = [
  'llama_gqa_untied',
  'qwen3_tied_qknorm',
  'qwen3_lora',
  'llama_lora_unembed',
  // real families, scaled down from their published shapes
  'llama3_rope_lora',
  'llama_linear_rope',
  'qwen2_bias',
  'qwen2_lora',
  'qwen3_bias_headdim',
  'mistral_lora',
  'smollm_lora',
];

/** Each case's config.json (classic form) and the same config as transformers 5 writes it. */
export const CONFIG_FILES = ['config.json', 'config.transformers5.json'] as const;

export interface ParityCase {
  name: string;
  sequences: { tokens: number[]; targets: number[]; weights: number[] }[];
  lora: { rank: number; alpha: number; target_modules: LoraTarget[] } | null;
  adam: {
    lr: number;
    beta1: number;
    beta2: number;
    eps: number;
    weight_decay: number;
    grad_clip: number;
  };
  expected: Map<string, { shape: number[]; data: Float64Array }>;
}

export function loadCase(name: string): ParityCase {
  const dir = join(PARITY_DIR, name);
  const c = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8'));
  return {
    name,
    ...c,
    expected: parseSafetensorsF64(readFileSync(join(dir, 'expected.safetensors'))),
  };
}

export function buildModel(
  name: string,
  threads = 1,
  configFile: (typeof CONFIG_FILES)[number] = 'config.json',
): TransformerModel {
  const dir = join(PARITY_DIR, name);
  const c = loadCase(name);
  const config = parseHfConfig(JSON.parse(readFileSync(join(dir, configFile), 'utf8')));
  const model = new TransformerModel(config, {
    threads,
    lora: c.lora
      ? { rank: c.lora.rank, alpha: c.lora.alpha, targets: c.lora.target_modules }
      : undefined,
  });
  model.loadTensors(parseSafetensors(readFileSync(join(dir, 'model.safetensors'))).tensors);
  if (c.lora)
    model.loadTensors(parseSafetensors(readFileSync(join(dir, 'adapter.safetensors'))).tensors, {
      partial: true,
    });
  return model;
}

/** max |a−b| / max(max |b|, tiny): relative to the tensor's scale, robust to entries near zero. */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i]! - expected[i]!));
    maxRef = Math.max(maxRef, Math.abs(expected[i]!));
  }
  return maxDiff / Math.max(maxRef, 1e-30);
}
