// The engine's paths for models at real size, each checked against the exact path it replaces
// on small models: a bf16-stored frozen base, per-layer activation recompute, lazy loading
// from safetensors straight into engine memory, the cross-entropy computed over row chunks
// (never the full [tokens × vocab] logits), and attention that keeps no [T × T] matrix.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TensorMap, writeSafetensors } from '../../src/checkpoints/safetensors.js';
import { type ModelConfig, toHfConfig } from '../../src/engine/config.js';
import { bf16ToF32, f32ToBf16 } from '../../src/engine/dtype.js';
import { type ModelOptions, TransformerModel } from '../../src/engine/model.js';
import { randomSequences, randomWeights, randomWeightsVector } from './helpers.js';

// Big enough that GEMMs use packed tiles with edges, attention spans several 64-row blocks
// and the cross-entropy several 128-row chunks.
const config: ModelConfig = {
  vocabSize: 301,
  hiddenSize: 64,
  intermediateSize: 120,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 16,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  maxPositions: 512,
  tieWordEmbeddings: false,
  qkNorm: true,
  qkvBias: true,
};
const LORA = {
  rank: 4,
  alpha: 8,
  seed: 3,
  targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as (
    | 'q_proj'
    | 'k_proj'
    | 'v_proj'
    | 'o_proj'
    | 'gate_proj'
    | 'up_proj'
    | 'down_proj'
  )[],
};

/** Random weights rounded to bf16 values (what a bf16 checkpoint holds). */
function bf16Weights(model: TransformerModel, seed: number): TensorMap {
  const out: TensorMap = new Map();
  for (const [name, t] of randomWeights(model, seed, 0.15))
    out.set(name, { shape: t.shape, data: bf16ToF32(f32ToBf16(t.data)) });
  return out;
}

function build(cfg: ModelConfig, options: ModelOptions, weights?: TensorMap): TransformerModel {
  const model = new TransformerModel(cfg, options);
  model.loadTensors(weights ?? bf16Weights(model, 11), { partial: true });
  return model;
}

/** Two LoRA training steps; everything a caller can observe afterwards. */
function trainTwoSteps(model: TransformerModel) {
  const seqs = randomSequences(5, [150, 37, 170], model.config.vocabSize);
  const w = randomWeightsVector(6, 357);
  const logprobs: Float32Array[] = [];
  let grads: Float32Array[] = [];
  for (let s = 0; s < 2; s++) {
    logprobs.push(model.forwardBackwardCrossEntropy(seqs, w).logprobs);
    grads = model.trainableNames().map((n) => model.getGrad(n)!.slice());
    model.optimStep({ learningRate: 1e-2, weightDecay: 0.01, gradClipNorm: 1 });
  }
  const adapters = model.trainableNames().map((n) => model.getTensor(n));
  const sampled = model.sample([1, 2, 3, 4, 5], { n: 2, maxTokens: 6, seed: 9, temperature: 1 });
  return { logprobs, grads, adapters, sampled };
}

describe('bf16 frozen base', () => {
  // Widening bf16 to float32 is exact and happens while the GEMM packs its panels, so the
  // micro-kernels see the very numbers a float32 copy of the same bf16 values would give, in
  // the same order: results must be equal bit for bit, not merely close.
  for (const tied of [false, true])
    it(`trains and samples bitwise like a float32 base of the same values (tied embeddings: ${tied})`, () => {
      const cfg = { ...config, tieWordEmbeddings: tied };
      const ref = new TransformerModel(cfg, { threads: 1, lora: LORA });
      const weights = bf16Weights(ref, 11);
      ref.loadTensors(weights, { partial: true });
      const half = build(cfg, { threads: 2, lora: LORA, baseDtype: 'bfloat16' }, weights);
      expect(half.tensorDtype('model.layers.0.mlp.up_proj.weight')).toBe('BF16');
      expect(half.tensorDtype('model.norm.weight')).toBe('F32');
      expect(half.tensorDtype('model.layers.0.mlp.up_proj.lora_A.weight')).toBe('F32');
      expect(half.getTensor('model.embed_tokens.weight')).toEqual(
        weights.get('model.embed_tokens.weight')!.data,
      );
      expect(trainTwoSteps(half)).toEqual(trainTwoSteps(ref));
    });

  it('rounds float32 values to the nearest bf16 on setTensor', () => {
    const model = build(config, { threads: 1, lora: LORA, baseDtype: 'bfloat16' });
    const name = 'model.layers.1.self_attn.o_proj.weight';
    const data = Float32Array.from({ length: 64 * 64 }, (_, i) => Math.sin(i) * 0.3);
    model.loadTensors(new Map([[name, { shape: [64, 64], data }]]), { partial: true });
    expect(model.getTensor(name)).toEqual(bf16ToF32(f32ToBf16(data)));
  });

  it('is refused without a LoRA adapter, and bad options are named', () => {
    expect(() => new TransformerModel(config, { baseDtype: 'bfloat16' })).toThrow(
      /baseDtype 'bfloat16' needs a LoRA adapter/,
    );
    expect(
      () => new TransformerModel(config, { lora: LORA, baseDtype: 'float16' as 'float32' }),
    ).toThrow(/engine options: baseDtype/);
  });
});

describe('activation recompute', () => {
  // Backward re-runs the same layer_forward on the same saved layer input: the activations it
  // rebuilds are bitwise those a stored forward keeps, so everything downstream is too.
  for (const lora of [true, false])
    it(`gives bitwise the same training as stored activations (${lora ? 'LoRA' : 'full'})`, () => {
      const opts = { threads: 2, lora: lora ? LORA : undefined };
      const ref = build(config, opts);
      const re = build(config, { ...opts, recompute: true });
      expect(trainTwoSteps(re)).toEqual(trainTwoSteps(ref));
    });

  it('with a bf16 base, and through forwardHidden/backwardHidden', () => {
    const opts = { threads: 1, lora: LORA, baseDtype: 'bfloat16' as const };
    const run = (m: TransformerModel) => {
      const seqs = randomSequences(7, [90, 20], config.vocabSize);
      const pooled = m.forwardHidden(seqs, { pooling: 'mean', saveForBackward: true });
      m.backwardHidden(randomWeightsVector(8, pooled.length));
      return { pooled, grads: m.trainableNames().map((n) => m.getGrad(n)) };
    };
    expect(run(build(config, { ...opts, recompute: true }))).toEqual(run(build(config, opts)));
  });
});

describe('lazy safetensors loading', () => {
  const lazyConfig: ModelConfig = { ...config, qkvBias: false }; // a Qwen3-shaped config
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'temper-lazy-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const dtype of ['BF16', 'F32'] as const)
    for (const baseDtype of ['float32', 'bfloat16'] as const)
      it(`reads a ${dtype} file into a ${baseDtype} base exactly as loadTensors does`, async () => {
        const model = new TransformerModel(lazyConfig, { threads: 1, lora: LORA, baseDtype });
        const weights = bf16Weights(model, 21);
        const sub = join(dir, `${dtype}-${baseDtype}`);
        await rm(sub, { recursive: true, force: true });
        await import('node:fs/promises').then((fs) => fs.mkdir(sub));
        await writeFile(join(sub, 'config.json'), JSON.stringify(toHfConfig(lazyConfig)));
        await writeSafetensors(join(sub, 'model.safetensors'), weights, { dtype });
        const lazy = await TransformerModel.fromDirectory(sub, {
          threads: 1,
          lora: LORA,
          baseDtype,
        });
        const eager = build(lazyConfig, { threads: 1, lora: LORA, baseDtype }, weights);
        for (const t of lazy.tensorInfo())
          expect(lazy.getTensor(t.name), t.name).toEqual(eager.getTensor(t.name));
        const seqs = randomSequences(2, [40], lazyConfig.vocabSize);
        expect(lazy.forward(seqs)).toEqual(eager.forward(seqs));
      });

  it('names a wrong shape before writing anything, and a non-finite value with its index', async () => {
    const model = new TransformerModel(lazyConfig, { threads: 1, lora: LORA });
    const weights = bf16Weights(model, 21);
    const bad = join(dir, 'bad');
    await import('node:fs/promises').then((fs) => fs.mkdir(bad, { recursive: true }));
    await writeFile(join(bad, 'config.json'), JSON.stringify(toHfConfig(lazyConfig)));
    const shaped = new Map(weights);
    shaped.set('model.norm.weight', { shape: [63], data: new Float32Array(63) });
    await writeSafetensors(join(bad, 'model.safetensors'), shaped, { dtype: 'BF16' });
    await expect(TransformerModel.fromDirectory(bad, { lora: LORA })).rejects.toThrow(
      /tensor 'model.norm.weight' has shape \[63\], expected \[64\]/,
    );
    const nonFinite = new Map(weights);
    const up = weights.get('model.layers.1.mlp.up_proj.weight')!;
    const data = up.data.slice();
    data[17] = Number.NaN;
    nonFinite.set('model.layers.1.mlp.up_proj.weight', { shape: up.shape, data });
    await writeSafetensors(join(bad, 'model.safetensors'), nonFinite, { dtype: 'BF16' });
    await expect(
      TransformerModel.fromDirectory(bad, { lora: LORA, baseDtype: 'bfloat16' }),
    ).rejects.toThrow(
      /tensor 'model.layers.1.mlp.up_proj.weight' has a non-finite value at flat index 17/,
    );
  });
});

describe('chunked cross-entropy', () => {
  // The unembedding runs 128 rows at a time (the engine never holds [tokens × vocab]); here
  // the last rows of sequences that end in the 2nd and 3rd chunk are recomputed unchunked in
  // float64 from the final hidden states: logprob = z[target] − logsumexp(z), and the
  // gradient of the logprob wrt the hidden state, W[target] − softmaxᵀ·W, fed through
  // backwardHidden must give the gradients backward() gives.
  it('matches a float64 unchunked computation: logprobs and LoRA gradients', () => {
    const opts = { threads: 2, lora: LORA };
    const cfg = { ...config, tieWordEmbeddings: false };
    const seqs = randomSequences(31, [140, 125], cfg.vocabSize); // last rows: 139 and 264
    const viaCe = build(cfg, opts);
    const lp = viaCe.forward(seqs, { saveForBackward: true });
    const ends = [139, 264];
    const d = new Float32Array(lp.length);
    for (const e of ends) d[e] = 1;
    viaCe.backward(d);

    const viaHidden = build(cfg, opts);
    const hf = viaHidden.forwardHidden(seqs, { pooling: 'last', saveForBackward: true });
    const W = viaHidden.getTensor('lm_head.weight');
    const H = cfg.hiddenSize;
    const V = cfg.vocabSize;
    const dpooled = new Float32Array(hf.length);
    seqs.forEach((s, si) => {
      const h = hf.subarray(si * H, (si + 1) * H);
      const z = Array.from({ length: V }, (_, v) => {
        let acc = 0;
        for (let j = 0; j < H; j++) acc += W[v * H + j]! * h[j]!;
        return acc;
      });
      const mx = Math.max(...z);
      const sum = z.reduce((a, x) => a + Math.exp(x - mx), 0);
      const lse = mx + Math.log(sum);
      const target = s.targets[s.targets.length - 1]!;
      expect(Math.abs(lp[ends[si]!]! - (z[target]! - lse))).toBeLessThan(1e-5);
      for (let j = 0; j < H; j++) {
        let g = W[target * H + j]!;
        for (let v = 0; v < V; v++) g -= Math.exp(z[v]! - lse) * W[v * H + j]!;
        dpooled[si * H + j] = g;
      }
    });
    viaHidden.backwardHidden(dpooled);
    for (const n of viaCe.trainableNames()) {
      const a = viaCe.getGrad(n)!;
      const b = viaHidden.getGrad(n)!;
      let num = 0;
      let den = 0;
      for (let i = 0; i < a.length; i++) {
        num += (a[i]! - b[i]!) ** 2;
        den += a[i]! ** 2;
      }
      expect(Math.sqrt(num / Math.max(den, 1e-30)), n).toBeLessThan(1e-4);
    }
  });
});
