// Small random models for engine tests.
import { execFileSync } from 'node:child_process';
import type { TensorMap } from '../../src/checkpoints/safetensors.js';
import type { ModelConfig } from '../../src/engine/config.js';
import { type ModelOptions, TransformerModel } from '../../src/engine/model.js';

export const TINY: ModelConfig = {
  vocabSize: 37,
  hiddenSize: 24,
  intermediateSize: 40,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 8,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  maxPositions: 128,
  tieWordEmbeddings: false,
  qkNorm: true,
};

import { seededRandom as rng } from '../../src/util/seeded-random.js';

export { rng };

/** Random base weights (adapters keep the engine's PEFT-style initialisation). */
export function randomWeights(model: TransformerModel, seed: number, scale = 0.2): TensorMap {
  const r = rng(seed);
  const out: TensorMap = new Map();
  for (const t of model.tensorInfo()) {
    if (t.name.includes('.lora_')) continue;
    const n = t.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const isNorm = t.shape.length === 1 && !t.name.endsWith('.bias');
    for (let i = 0; i < n; i++) data[i] = isNorm ? 1 + (r() - 0.5) * 0.2 : (r() - 0.5) * 2 * scale;
    out.set(t.name, { shape: t.shape, data });
  }
  return out;
}

export function tinyModel(
  opts: ModelOptions & { seed?: number; config?: Partial<ModelConfig> } = {},
): TransformerModel {
  const model = new TransformerModel(
    { ...TINY, ...opts.config },
    { threads: opts.threads ?? 1, lora: opts.lora },
  );
  model.loadTensors(randomWeights(model, opts.seed ?? 1), { partial: true });
  return model;
}

export function randomSequences(seed: number, lens: number[], vocab = TINY.vocabSize) {
  const r = rng(seed);
  return lens.map((n) => ({
    tokens: Array.from({ length: n }, () => Math.floor(r() * vocab)),
    targets: Array.from({ length: n }, () => Math.floor(r() * vocab)),
  }));
}

export function randomWeightsVector(seed: number, n: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => (r() - 0.3) * 2);
}

/**
 * Runs `script` (TypeScript, run from the repository root) in a child process whose engine
 * uses the kernel set `simd` (TEMPER_SIMD), and parses the JSON its last line prints.
 */
export function underKernelSet<T>(simd: 'generic' | 'avx2' | 'avx512', script: string): T {
  const out = execFileSync('npx', ['tsx', '--eval', script], {
    env: { ...process.env, TEMPER_SIMD: simd },
    encoding: 'utf8',
    maxBuffer: 16 << 20,
  });
  return JSON.parse(out.trim().split('\n').at(-1)!) as T;
}
