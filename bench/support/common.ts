// Pieces the benchmarks share: the ~25M-parameter model they measure and a median.
import type { ModelConfig } from '../../src/engine/config.js';

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
