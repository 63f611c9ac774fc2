// The fused cross-entropy at a vocabulary of several blocks and more rows than one pass takes:
// logprobs and the gradient it leaves for backward (d logprob / d hidden = W_t − Σ p·W, computed
// in the forward pass when the unembedding is frozen) against float64 from the hidden states,
// for a float32 and a bf16 (tied) unembedding, and bitwise the same for 1 and 2 threads.
import { describe, expect, it } from 'vitest';
import type { ModelConfig } from '../../src/engine/config.js';
import { bf16ToF32, f32ToBf16 } from '../../src/engine/dtype.js';
import { type ModelOptions, TransformerModel } from '../../src/engine/model.js';
import { randomSequences, randomWeights } from './helpers.js';

// vocab 2600: blocks of 1024, 1024 and 552 entries; 3 x 700 rows: two row passes (2048 + 52).
const config: ModelConfig = {
  vocabSize: 2600,
  hiddenSize: 32,
  intermediateSize: 48,
  numLayers: 1,
  numHeads: 2,
  numKvHeads: 1,
  headDim: 16,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  maxPositions: 1024,
  tieWordEmbeddings: false,
  qkNorm: false,
};
const LORA = { rank: 4, alpha: 8, seed: 2, targets: ['q_proj' as const, 'up_proj' as const] };
const LENS = [700, 700, 700];
const ENDS = [699, 1399, 2099];

function build(cfg: ModelConfig, options: ModelOptions): TransformerModel {
  const model = new TransformerModel(cfg, options);
  const weights = randomWeights(model, 7, 0.6); // large enough that softmaxes are peaked
  for (const t of weights.values()) t.data.set(bf16ToF32(f32ToBf16(t.data)));
  model.loadTensors(weights, { partial: true });
  return model;
}

function relativeError(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

for (const tied of [false, true])
  describe(`fused cross-entropy over vocabulary blocks (${tied ? 'tied bf16' : 'untied float32'} unembedding)`, () => {
    const cfg = { ...config, tieWordEmbeddings: tied };
    const opts: ModelOptions = tied
      ? { threads: 2, lora: LORA, baseDtype: 'bfloat16' }
      : { threads: 2, lora: LORA };
    const seqs = randomSequences(13, LENS, cfg.vocabSize);

    it('matches float64 from the hidden states: logprobs and the LoRA gradients they give', () => {
      const viaCe = build(cfg, opts);
      const lp = viaCe.forward(seqs, { saveForBackward: true });
      const d = new Float32Array(lp.length);
      for (const e of ENDS) d[e] = 1;
      viaCe.backward(d);

      const viaHidden = build(cfg, opts);
      const hf = viaHidden.forwardHidden(seqs, { pooling: 'last', saveForBackward: true });
      const W = viaHidden.getTensor(tied ? 'model.embed_tokens.weight' : 'lm_head.weight');
      const H = cfg.hiddenSize;
      const V = cfg.vocabSize;
      const dpooled = new Float32Array(hf.length);
      let maxP = 0;
      seqs.forEach((s, si) => {
        const h = hf.subarray(si * H, (si + 1) * H);
        const z = Array.from({ length: V }, (_, v) => {
          let acc = 0;
          for (let j = 0; j < H; j++) acc += W[v * H + j]! * h[j]!;
          return acc;
        });
        const mx = Math.max(...z);
        const lse = mx + Math.log(z.reduce((a, x) => a + Math.exp(x - mx), 0));
        const target = s.targets[s.targets.length - 1]!;
        const want = z[target]! - lse;
        expect(Math.abs(lp[ENDS[si]!]! - want)).toBeLessThan(1e-5 * Math.max(1, Math.abs(want)));
        maxP = Math.max(maxP, ...z.map((x) => Math.exp(x - lse)));
        for (let j = 0; j < H; j++) {
          let g = W[target * H + j]!;
          for (let v = 0; v < V; v++) g -= Math.exp(z[v]! - lse) * W[v * H + j]!;
          dpooled[si * H + j] = g;
        }
      });
      expect(maxP).toBeGreaterThan(0.01); // far from flat (uniform: 1/2600)
      viaHidden.backwardHidden(dpooled);
      for (const n of viaCe.trainableNames())
        expect(relativeError(viaCe.getGrad(n)!, viaHidden.getGrad(n)!), n).toBeLessThan(1e-4);
    });

    it('gives bitwise the same logprobs and gradients for 1 and 2 threads, saved or not', () => {
      const run = (threads: number) => {
        const model = build(cfg, { ...opts, threads });
        const scored = model.forward(seqs);
        const weights = new Float32Array(scored.length).fill(1 / scored.length);
        const { logprobs } = model.forwardBackwardCrossEntropy(seqs, weights);
        expect(logprobs).toEqual(scored);
        return { logprobs, grads: model.trainableNames().map((n) => model.getGrad(n)!.slice()) };
      };
      expect(run(1)).toEqual(run(2));
    });
  });
