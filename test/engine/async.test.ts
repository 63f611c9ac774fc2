// The *Async engine calls: same results as the synchronous ones, the event loop keeps running
// while they work, and a model refuses a second call while one is in flight.
import { describe, expect, it } from 'vitest';
import { randomSequences, randomWeightsVector, tinyModel } from './helpers.js';

describe('asynchronous engine calls', () => {
  it('give bitwise the same training step and samples as the synchronous calls', async () => {
    const seqs = randomSequences(3, [30, 12, 50]);
    const w = randomWeightsVector(4, 92);
    const sync = tinyModel({ seed: 2, threads: 2 });
    const asyn = tinyModel({ seed: 2, threads: 2 });
    const a = sync.forwardBackwardCrossEntropy(seqs, w);
    const b = await asyn.forwardBackwardCrossEntropyAsync(seqs, w);
    expect(b.loss).toBe(a.loss);
    expect(b.logprobs).toEqual(a.logprobs);
    expect((await asyn.optimStepAsync({ learningRate: 1e-2 })).gradNorm).toBe(
      sync.optimStep({ learningRate: 1e-2 }).gradNorm,
    );
    for (const name of sync.trainableNames())
      expect(asyn.getTensor(name)).toEqual(sync.getTensor(name));
    const params = { n: 3, maxTokens: 10, seed: 5, promptLogprobs: true };
    expect(await asyn.sampleAsync([1, 2, 3], params)).toEqual(sync.sample([1, 2, 3], params));
  });

  it('keep the event loop free and refuse concurrent use of one model', async () => {
    const model = tinyModel({
      seed: 3,
      config: { hiddenSize: 64, intermediateSize: 128, maxPositions: 2048 },
    });
    const seqs = randomSequences(5, [1500, 1500]);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const pending = model.forwardAsync(seqs, { saveForBackward: true });
    expect(() => model.forward(seqs)).toThrow(/busy/);
    await expect(model.optimStepAsync({ learningRate: 1 })).rejects.toThrow(/busy/);
    const logprobs = await pending;
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(0);
    expect(logprobs).toHaveLength(3000);
    await model.backwardAsync(new Float32Array(3000).fill(-1));
    expect(model.gradNorm()).toBeGreaterThan(0);
  });

  it('reject with the same clear errors', async () => {
    const model = tinyModel();
    await expect(model.backwardAsync([1])).rejects.toThrow(/needs a preceding forward/);
    await expect(model.forwardAsync([{ tokens: [1, 99], targets: [1, 2] }])).rejects.toThrow(
      /outside the vocabulary/,
    );
    await expect(model.sampleAsync([], {})).rejects.toThrow(/prompt is empty/);
    // a failed async call leaves the model usable
    expect(model.forward([{ tokens: [1, 2], targets: [2, 3] }])).toHaveLength(2);
  });
});
