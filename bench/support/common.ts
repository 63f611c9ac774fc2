// Pieces the benchmarks share: the ~25M-parameter model they measure, a median, a noise-aware
// median of reps, and a simulated training step over a model's tensors.
import type { TensorMap } from '../../src/checkpoints/safetensors.js';
import type { ModelConfig } from '../../src/engine/config.js';
import { seededRandom } from '../../src/util/seeded-random.js';

/** Llama-style, untied, byte vocabulary: 25,453,056 parameters. */
export const LLAMA_25M: ModelConfig = {
  vocabSize: 272,
  hiddenSize: 512,
  intermediateSize: 1536,
  numLayers: 8,
  numHeads: 8,
  numKvHeads: 4,
  headDim: 64,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  maxPositions: 2048,
  tieWordEmbeddings: false,
  qkNorm: false,
};

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : 0.5 * (s[mid - 1]! + s[mid]!);
}

/**
 * Medians of timed reps that remember whether any spread was over 25% (max/min): a bench
 * reports `noisy` in its JSON line when the machine was too busy to trust the numbers.
 */
export class Reps {
  noisy = false;
  constructor(private readonly log: (line: string) => void) {}

  settle(label: string, xs: readonly number[]): number {
    const lo = Math.min(...xs);
    const hi = Math.max(...xs);
    if (xs.length > 1 && lo > 0 && (hi - lo) / lo > 0.25) {
      this.noisy = true;
      this.log(`  (noisy: ${label} reps ${xs.map((x) => Math.round(x * 100) / 100).join(', ')})`);
    }
    return median(xs);
  }
}

/** A "training step": a tenth of every tensor's entries moved a little, seeded. */
export function perturbTensors(t: TensorMap, seed: number, scale = 0.01): TensorMap {
  const u = seededRandom(seed);
  const out: TensorMap = new Map();
  for (const [k, v] of t) {
    const d = Float32Array.from(v.data);
    for (let i = 0; i < d.length; i += 10) d[i] = (d[i] as number) + scale * (u() - 0.5);
    out.set(k, { shape: v.shape, data: d });
  }
  return out;
}
