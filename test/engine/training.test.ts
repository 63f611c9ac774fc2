import { describe, expect, it } from 'vitest';
import { TransformerModel } from '../../src/engine/model.js';
import { randomSequences, randomWeightsVector, TINY, tinyModel } from './helpers.js';

describe('training semantics', () => {
  it('gradients accumulate across calls until an optimizer step', () => {
    const seqs = randomSequences(1, [10, 6, 8]);
    const w = randomWeightsVector(2, 24);
    const whole = tinyModel({ seed: 5 });
    whole.forwardBackwardCrossEntropy(seqs, w);
    const split = tinyModel({ seed: 5 });
    split.forwardBackwardCrossEntropy(seqs.slice(0, 1), w.slice(0, 10));
    split.forwardBackwardCrossEntropy(seqs.slice(1), w.slice(10));
    for (const name of whole.trainableNames()) {
      const a = whole.getGrad(name)!;
      const b = split.getGrad(name)!;
      a.forEach((x, i) => {
        expect(b[i]).toBeCloseTo(x, 4);
      });
    }
    split.optimStep({ learningRate: 1e-3 });
    expect(split.gradNorm()).toBe(0);
  });

  it('a custom loss through backward(dlogprob) equals the fused cross-entropy', () => {
    const seqs = randomSequences(3, [7, 9]);
    const w = randomWeightsVector(4, 16);
    const fused = tinyModel({ seed: 6 });
    fused.forwardBackwardCrossEntropy(seqs, w);
    const custom = tinyModel({ seed: 6 });
    custom.forward(seqs, { saveForBackward: true });
    custom.backward(w.map((x) => -x));
    for (const name of fused.trainableNames())
      expect(custom.getGrad(name)).toEqual(fused.getGrad(name));
  });

  it('LoRA trains only the adapter; disabling it gives the base model', () => {
    const base = tinyModel({ seed: 8 });
    const lora = tinyModel({ seed: 8, lora: { rank: 2, alpha: 4 } });
    expect(lora.trainableNames().every((n) => n.includes('.lora_'))).toBe(true);
    const seqs = randomSequences(5, [12]);
    // A fresh adapter (B = 0) is the identity.
    expect(lora.forward(seqs)).toEqual(base.forward(seqs));
    for (let i = 0; i < 3; i++) {
      lora.forwardBackwardCrossEntropy(seqs, new Array(12).fill(1));
      lora.optimStep({ learningRate: 5e-2 });
    }
    const tuned = lora.forward(seqs);
    expect(tuned).not.toEqual(base.forward(seqs));
    lora.setAdapterEnabled(false);
    expect(lora.forward(seqs)).toEqual(base.forward(seqs));
    lora.setAdapterEnabled(true);
    expect(lora.forward(seqs)).toEqual(tuned);
    expect(lora.getTensor('model.layers.0.self_attn.q_proj.weight')).toEqual(
      base.getTensor('model.layers.0.self_attn.q_proj.weight'),
    );
  });

  it('repeated SFT steps lower the loss', () => {
    const model = tinyModel({ seed: 9 });
    const seqs = randomSequences(6, [20, 20]);
    const w = new Array(40).fill(1);
    const losses: number[] = [];
    for (let i = 0; i < 15; i++) {
      losses.push(model.forwardBackwardCrossEntropy(seqs, w).loss);
      model.optimStep({ learningRate: 1e-2 });
    }
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.5);
    expect(model.step).toBe(15);
  });
});

describe('errors become exceptions with clear messages', () => {
  const model = tinyModel();
  it('bad batches', () => {
    expect(() => model.forward([])).toThrow(/batch is empty/);
    expect(() => model.forward([{ tokens: [1, 2], targets: [1] }])).toThrow(
      /2 tokens but 1 targets/,
    );
    expect(() => model.forward([{ tokens: [1, 99], targets: [1, 2] }])).toThrow(
      /sequence 0 token 1: token id 99 is outside the vocabulary \[0, 37\)/,
    );
    expect(() =>
      model.forward([{ tokens: new Array(200).fill(1), targets: new Array(200).fill(1) }]),
    ).toThrow(/max_position_embeddings/);
  });
  it('backward misuse and non-finite gradients', () => {
    const fresh = tinyModel();
    expect(() => fresh.backward([1])).toThrow(/needs a preceding forward/);
    fresh.forward([{ tokens: [1, 2], targets: [2, 3] }], { saveForBackward: true });
    expect(() => fresh.backward([1])).toThrow(/got 1 gradients for 2 target tokens/);
    expect(() => fresh.backward([1, Number.NaN])).toThrow(/position 1 is not finite/);
  });
  it('bad tensors leave the model unchanged', () => {
    const before = model.getTensor('model.norm.weight');
    const good = { shape: [TINY.hiddenSize], data: new Float32Array(TINY.hiddenSize).fill(2) };
    expect(() =>
      model.loadTensors(
        new Map([
          ['model.norm.weight', good],
          ['model.nope', good],
        ]),
        { partial: true },
      ),
    ).toThrow(/unexpected tensor 'model.nope'/);
    expect(() =>
      model.loadTensors(
        new Map([['model.norm.weight', { shape: [3], data: new Float32Array(3) }]]),
        { partial: true },
      ),
    ).toThrow(/shape \[3\], expected \[24\]/);
    const nan = new Float32Array(TINY.hiddenSize);
    nan[5] = Number.NaN;
    expect(() =>
      model.loadTensors(new Map([['model.norm.weight', { shape: [TINY.hiddenSize], data: nan }]]), {
        partial: true,
      }),
    ).toThrow(/non-finite value at flat index 5/);
    expect(model.getTensor('model.norm.weight')).toEqual(before);
  });
  it('bad configs and options', () => {
    expect(() => new TransformerModel({ ...TINY, numKvHeads: 3 })).toThrow(
      /multiple of num_key_value_heads/,
    );
    expect(() => new TransformerModel(TINY, { lora: { rank: 0, alpha: 1 } })).toThrow(/rank/);
    expect(() => tinyModel().optimStep({ learningRate: -1 })).toThrow(/learningRate/);
  });
});

describe('zero-copy tensor views', () => {
  it('alias the engine memory, follow optimizer steps and keep working after reloads', () => {
    const model = tinyModel({ seed: 4 });
    const name = 'model.layers.0.mlp.up_proj.weight';
    const view = model.tensorView(name)!;
    expect(view).toEqual(model.getTensor(name));
    const seqs = randomSequences(2, [8]);
    model.forwardBackwardCrossEntropy(seqs, new Array(8).fill(1));
    expect(model.tensorView(name, 'grad')).toEqual(model.getGrad(name));
    model.optimStep({ learningRate: 1e-2 });
    expect(view).toEqual(model.getTensor(name)); // updated in place
    expect(model.tensorView(name, 'm')).toEqual(model.getOptimizerState(name)!.m);
    model.loadTensors(
      new Map([
        [
          name,
          {
            shape: [TINY.intermediateSize, TINY.hiddenSize],
            data: new Float32Array(view.length).fill(0.5),
          },
        ],
      ]),
      {
        partial: true,
      },
    );
    expect(view[0]).toBe(0.5); // loading writes into the same storage
    const lora = tinyModel({ lora: { rank: 2, alpha: 4 } });
    expect(lora.tensorView(name, 'm')).toBeNull();
    expect(() => model.tensorView(name, 'x' as 'm')).toThrow(/kind must be/);
  });
});

describe('gradient scaling in the optimizer step', () => {
  it('gradScale s equals training on weights multiplied by s', () => {
    const seqs = randomSequences(7, [9, 5]);
    const w = randomWeightsVector(8, 14);
    const scaled = tinyModel({ seed: 12 });
    const pre = tinyModel({ seed: 12 });
    for (let step = 0; step < 3; step++) {
      scaled.forwardBackwardCrossEntropy(seqs, w);
      const a = scaled.optimStep({ learningRate: 1e-2, gradClipNorm: 0.5, gradScale: 1 / 14 });
      pre.forwardBackwardCrossEntropy(
        seqs,
        w.map((x) => x / 14),
      );
      const b = pre.optimStep({ learningRate: 1e-2, gradClipNorm: 0.5 });
      expect(a.gradNorm).toBeCloseTo(b.gradNorm, 5);
    }
    for (const name of pre.trainableNames()) {
      const x = scaled.getTensor(name);
      const y = pre.getTensor(name);
      let diff = 0;
      for (let i = 0; i < x.length; i++) diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
      expect(diff, name).toBeLessThan(1e-5);
    }
    expect(() => scaled.optimStep({ learningRate: 1e-2, gradScale: 0 })).toThrow(/gradScale/);
  });
});
