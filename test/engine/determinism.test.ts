// Results must not depend on the thread count: logprobs, gradients and updated weights are
// compared bit for bit between 1 and 2 threads on shapes large enough to split GEMM tiles,
// attention tasks and norm-weight reductions across threads.
import { describe, expect, it } from 'vitest';
import { TransformerModel } from '../../src/engine/model.js';
import { randomSequences, randomWeights, randomWeightsVector } from './helpers.js';

const config = {
  vocabSize: 300,
  hiddenSize: 96,
  intermediateSize: 200,
  numLayers: 2,
  numHeads: 6,
  numKvHeads: 2,
  headDim: 16,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  maxPositions: 512,
  tieWordEmbeddings: false,
  qkNorm: true,
  // bias gradients are reductions over rows too (split by columns across threads)
  qkvBias: true,
  oProjBias: true,
};

function trainTwoSteps(threads: number, lora: boolean) {
  const model = new TransformerModel(config, {
    threads,
    lora: lora ? { rank: 4, alpha: 8, seed: 5 } : undefined,
  });
  model.loadTensors(randomWeights(model, 3, 0.1), { partial: true });
  const seqs = randomSequences(4, [70, 33, 150, 5], config.vocabSize);
  const w = randomWeightsVector(9, 258);
  const logprobs: Float32Array[] = [];
  for (let s = 0; s < 2; s++) {
    logprobs.push(model.forwardBackwardCrossEntropy(seqs, w).logprobs);
    model.optimStep({ learningRate: 1e-2, weightDecay: 0.01, gradClipNorm: 1 });
  }
  return {
    logprobs,
    weights: model.namedTensors(),
    sample: model.sample([1, 2, 3], { n: 3, maxTokens: 12, seed: 7 }),
  };
}

describe('bitwise determinism across thread counts', () => {
  it.each([false, true])('lora=%s: 1 thread equals 2 threads', (lora) => {
    const a = trainTwoSteps(1, lora);
    const b = trainTwoSteps(2, lora);
    for (let s = 0; s < 2; s++)
      expect(Buffer.from(a.logprobs[s]!.buffer).equals(Buffer.from(b.logprobs[s]!.buffer))).toBe(
        true,
      );
    for (const [name, t] of a.weights) {
      const other = b.weights.get(name)!;
      expect(Buffer.from(t.data.buffer).equals(Buffer.from(other.data.buffer)), name).toBe(true);
    }
    expect(a.sample).toEqual(b.sample);
  });
});
