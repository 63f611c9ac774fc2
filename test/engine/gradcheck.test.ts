// Finite-difference checks of the engine's backward pass: for each trainable tensor, the
// directional derivative of L = −Σ w·logprob along a random direction d must equal ⟨∇L, d⟩.
import { describe, expect, it } from 'vitest';
import type { TransformerModel } from '../../src/engine/model.js';
import { randomSequences, randomWeightsVector, rng, tinyModel } from './helpers.js';

const seqs = randomSequences(7, [9, 4, 13]);
const weights = randomWeightsVector(8, 26);

function loss(model: TransformerModel): number {
  const lp = model.forward(seqs);
  let l = 0;
  for (let i = 0; i < lp.length; i++) l -= weights[i]! * lp[i]!;
  return l;
}

function checkTensor(
  model: TransformerModel,
  name: string,
  seed: number,
): { fd: number; analytic: number } {
  const base = model.getTensor(name);
  const grad = model.getGrad(name)!;
  const r = rng(seed);
  const dir = Float32Array.from(base, () => r() - 0.5);
  let analytic = 0;
  for (let i = 0; i < dir.length; i++) analytic += grad[i]! * dir[i]!;
  const eps = 3e-3;
  const shape = model.tensorInfo().find((t) => t.name === name)!.shape;
  const at = (s: number) => {
    model.loadTensors(
      new Map([[name, { shape, data: base.map((v, i) => v + s * eps * dir[i]!) }]]),
      { partial: true },
    );
    return loss(model);
  };
  // Fourth-order central difference: the error is O(eps⁴), so float32 noise dominates.
  const fd = (8 * (at(1) - at(-1)) - (at(2) - at(-2))) / (12 * eps);
  model.loadTensors(new Map([[name, { shape, data: base }]]), { partial: true });
  return { fd, analytic };
}

describe('finite-difference gradient checks', () => {
  it.each([
    ['full fine-tuning, q/k norm, untied', {}],
    [
      'full fine-tuning, tied embeddings, no q/k norm',
      { config: { tieWordEmbeddings: true, qkNorm: false } },
    ],
    [
      'full fine-tuning, q/k/v and o_proj biases, llama3 RoPE scaling',
      {
        config: {
          qkvBias: true,
          oProjBias: true,
          ropeScaling: {
            type: 'llama3',
            factor: 8,
            lowFreqFactor: 1,
            highFreqFactor: 4,
            originalMaxPositions: 8,
          },
        },
      },
    ],
    [
      'LoRA on biased projections (biases frozen), linear RoPE scaling',
      {
        config: { qkvBias: true, ropeScaling: { type: 'linear', factor: 3 } },
        lora: { rank: 2, alpha: 4, seed: 5 },
      },
    ],
    [
      'LoRA on every projection and the unembedding',
      {
        lora: {
          rank: 3,
          alpha: 6,
          targets: [
            'q_proj',
            'k_proj',
            'v_proj',
            'o_proj',
            'gate_proj',
            'up_proj',
            'down_proj',
            'lm_head',
          ] as const,
          seed: 3,
        },
      },
    ],
  ])('%s', (_label, opts) => {
    const model = tinyModel({ ...(opts as object), seed: 11 });
    if (model.lora) {
      // Non-zero B so that the A gradients are not trivially zero.
      for (const t of model.tensorInfo().filter((x) => x.name.includes('lora_B'))) {
        const r = rng(t.name.length);
        model.loadTensors(
          new Map([
            [
              t.name,
              {
                shape: t.shape,
                data: Float32Array.from(
                  { length: t.shape[0]! * t.shape[1]! },
                  () => (r() - 0.5) * 0.4,
                ),
              },
            ],
          ]),
          { partial: true },
        );
      }
    }
    model.forwardBackwardCrossEntropy(seqs, weights);
    let seed = 100;
    for (const name of model.trainableNames()) {
      const { fd, analytic } = checkTensor(model, name, seed++);
      expect(Math.abs(fd - analytic), `${name}: fd ${fd} vs analytic ${analytic}`).toBeLessThan(
        2e-3 * Math.max(1, Math.abs(analytic)),
      );
    }
  });
});
