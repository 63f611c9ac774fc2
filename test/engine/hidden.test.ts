// Embeddings: pooled final hidden states and backpropagation from them (forwardHidden /
// backwardHidden), checked by finite differences and against the per-token definition.
import { describe, expect, it } from 'vitest';
import type { TransformerModel } from '../../src/engine/model.js';
import { randomSequences, rng, TINY, tinyModel } from './helpers.js';

const seqs = randomSequences(3, [7, 4, 11]).map((s) => ({ tokens: s.tokens }));

// A scalar loss of the pooled embeddings: Σ c·e over a fixed random direction c.
function embeddingLoss(model: TransformerModel, pooling: 'mean' | 'last', c: Float32Array): number {
  const e = model.forwardHidden(seqs, { pooling });
  let l = 0;
  for (let i = 0; i < e.length; i++) l += c[i]! * e[i]!;
  return l;
}

describe('pooled hidden states', () => {
  it('mean and last pooling agree with each other on one-token sequences and have the right shape', () => {
    const model = tinyModel({ seed: 3 });
    const mean = model.forwardHidden(seqs, { pooling: 'mean' });
    expect(mean).toHaveLength(3 * TINY.hiddenSize);
    const single = [{ tokens: [5] }, { tokens: [9] }];
    expect(model.forwardHidden(single, { pooling: 'mean' })).toEqual(
      model.forwardHidden(single, { pooling: 'last' }),
    );
    // last pooling of a sequence is independent of what follows it in the batch
    const alone = model.forwardHidden([seqs[0]!], { pooling: 'last' });
    expect(Array.from(alone)).toEqual(
      Array.from(model.forwardHidden(seqs, { pooling: 'last' }).slice(0, TINY.hiddenSize)),
    );
  });

  it.each(['mean', 'last'] as const)(
    'backwardHidden matches finite differences (%s pooling)',
    (pooling) => {
      const model = tinyModel({ seed: 5 });
      const r = rng(11);
      const c = Float32Array.from({ length: 3 * TINY.hiddenSize }, () => r() - 0.5);
      model.forwardHidden(seqs, { pooling, saveForBackward: true });
      model.backwardHidden(c);
      for (const name of [
        'model.embed_tokens.weight',
        'model.layers.1.mlp.down_proj.weight',
        'model.norm.weight',
        'model.layers.0.self_attn.k_norm.weight',
      ]) {
        const base = model.getTensor(name);
        const grad = model.getGrad(name)!;
        const dir = Float32Array.from(base, () => r() - 0.5);
        let analytic = 0;
        for (let i = 0; i < dir.length; i++) analytic += grad[i]! * dir[i]!;
        const shape = model.tensorInfo().find((t) => t.name === name)!.shape;
        const eps = 3e-3;
        const at = (s: number) => {
          model.loadTensors(
            new Map([[name, { shape, data: base.map((v, i) => v + s * eps * dir[i]!) }]]),
            { partial: true },
          );
          return embeddingLoss(model, pooling, c);
        };
        const fd = (8 * (at(1) - at(-1)) - (at(2) - at(-2))) / (12 * eps);
        model.loadTensors(new Map([[name, { shape, data: base }]]), { partial: true });
        expect(Math.abs(fd - analytic), `${name}: fd ${fd} vs ${analytic}`).toBeLessThan(
          2e-3 * Math.max(1, Math.abs(analytic)),
        );
      }
    },
  );

  it('async variants agree and misuse gives clear errors', async () => {
    const a = tinyModel({ seed: 6 });
    const b = tinyModel({ seed: 6 });
    const d = new Float32Array(3 * TINY.hiddenSize).fill(0.1);
    expect(await b.forwardHiddenAsync(seqs, { saveForBackward: true })).toEqual(
      a.forwardHidden(seqs, { saveForBackward: true }),
    );
    a.backwardHidden(d);
    await b.backwardHiddenAsync(d);
    expect(b.getGrad('model.norm.weight')).toEqual(a.getGrad('model.norm.weight'));
    expect(() => a.backwardHidden(d)).not.toThrow(); // saved state persists until the next forward
    a.forward([{ tokens: [1, 2], targets: [2, 3] }], { saveForBackward: true });
    expect(() => a.backwardHidden(d)).toThrow(/needs a preceding forwardHidden/);
    a.forwardHidden(seqs, { saveForBackward: true });
    expect(() => a.backwardHidden([1])).toThrow(/got 1 gradients for 72 pooled hidden values/);
    expect(() => a.backward([1])).toThrow(/needs a preceding forward/);
  });
});
