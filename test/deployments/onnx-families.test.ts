// The ONNX serving graph of each supported family (q/k/v and o_proj biases, scaled RoPE, head_dim
// independent of hidden/heads) against the engine: prompt logprobs, KV-cache decode, and a
// greedy generation token for token.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { mergeLinear } from '../../src/checkpoints/exports/index.js';
import { parseSafetensors } from '../../src/checkpoints/safetensors.js';
import {
  expectedWeightNames,
  expectedWeightShape,
  OnnxDecoder,
} from '../../src/deployments/onnx/index.js';
import { type ModelConfig, parseHfConfig, TransformerModel } from '../../src/engine/index.js';
import { loadCase, PARITY_CASES, PARITY_DIR, relativeError } from '../engine/parity-fixtures.js';

const base = {
  vocab_size: 64,
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 96,
  hidden_act: 'silu',
};

/** Small configs in each family's real shape (written the way their hubs write them). */
const FAMILIES: [string, Record<string, unknown>][] = [
  [
    'Llama 3 (llama3 RoPE scaling, tied)',
    {
      ...base,
      model_type: 'llama',
      num_attention_heads: 4,
      num_key_value_heads: 1,
      tie_word_embeddings: true,
      rope_theta: 500,
      rope_scaling: {
        rope_type: 'llama3',
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 32,
      },
    },
  ],
  [
    'Llama (linear RoPE scaling, transformers 5 form)',
    {
      ...base,
      model_type: 'llama',
      num_attention_heads: 8,
      num_key_value_heads: 2,
      rope_parameters: { rope_type: 'linear', factor: 4, rope_theta: 10000 },
    },
  ],
  [
    'Llama with attention_bias (q/k/v and o_proj)',
    {
      ...base,
      model_type: 'llama',
      num_attention_heads: 4,
      num_key_value_heads: 2,
      attention_bias: true,
    },
  ],
  [
    'Qwen2 (q/k/v biases)',
    {
      ...base,
      model_type: 'qwen2',
      num_attention_heads: 4,
      num_key_value_heads: 2,
      rope_theta: 1e6,
      tie_word_embeddings: true,
      use_sliding_window: false,
      sliding_window: 32,
      max_window_layers: 1,
    },
  ],
  [
    'Qwen3 (head_dim 32 with hidden/heads 16, attention_bias)',
    {
      ...base,
      model_type: 'qwen3',
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 32,
      attention_bias: true,
      rope_theta: 1e6,
    },
  ],
  [
    'Mistral (no sliding window)',
    {
      ...base,
      model_type: 'mistral',
      num_attention_heads: 4,
      num_key_value_heads: 1,
      sliding_window: null,
    },
  ],
  [
    'SmolLM-shaped Llama (3 query heads per kv head)',
    {
      ...base,
      hidden_size: 48,
      model_type: 'llama',
      num_attention_heads: 6,
      num_key_value_heads: 2,
      rope_theta: 100000,
      tie_word_embeddings: true,
    },
  ],
];

function randomWeights(config: ModelConfig, seed: number) {
  let s = seed;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  return new Map(
    expectedWeightNames(config).map((name) => {
      const shape = expectedWeightShape(config, name);
      const n = shape.reduce((a, b) => a * b, 1);
      const isNorm = name.includes('norm');
      const data = Float32Array.from({ length: n }, () => (isNorm ? 1 + 0.1 * rnd() : 0.3 * rnd()));
      return [name, { shape, data }] as const;
    }),
  );
}

function mae(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs((a[i] as number) - (b[i] as number));
  return s / a.length;
}

describe.each(FAMILIES)('ONNX serving graph: %s', (_name, raw) => {
  const config = parseHfConfig(raw);
  const weights = randomWeights(config, 11);
  // longer than original_max_position_embeddings, so scaled frequencies really rotate
  const toks = Array.from({ length: 80 }, (_, i) => (i * 37 + 11) % config.vocabSize);

  it('prompt logprobs and KV-cache decode match the engine in both weight modes', async () => {
    const model = new TransformerModel(config, { threads: 1 });
    model.loadTensors(new Map(weights));
    const ref = model.forward([{ tokens: toks.slice(0, -1), targets: toks.slice(1) }]);
    for (const weightsAs of ['initializers', 'inputs'] as const) {
      const dec = await OnnxDecoder.create(config, weights, { weightsAs });
      const lp = (await dec.promptLogprobs(toks)).logprobs.slice(1) as number[];
      expect(mae(lp, ref)).toBeLessThan(1e-4);
      let r = await dec.step(toks.slice(0, 5));
      const V = config.vocabSize;
      const got: number[] = [];
      for (let i = 5; i < toks.length; i++) {
        got.push(r.logprobs[(r.logprobs.length / V - 1) * V + (toks[i] as number)] as number);
        r = await dec.step([toks[i] as number], r.cache);
      }
      expect(mae(got, Array.from(ref).slice(4))).toBeLessThan(1e-4);
      await dec.release();
    }
  });

  it('greedy generation: the same tokens and logprobs as the engine samples', async () => {
    const model = new TransformerModel(config, { threads: 1 });
    model.loadTensors(new Map(weights));
    const prompt = toks.slice(0, 6);
    const steps = 24;
    const sampled = model.sample(prompt, { maxTokens: steps, temperature: 0 }).samples[0]!;
    const dec = await OnnxDecoder.create(config, weights);
    const V = config.vocabSize;
    let r = await dec.step(prompt);
    const tokens: number[] = [];
    const logprobs: number[] = [];
    for (let i = 0; i < steps; i++) {
      const last = r.logprobs.subarray(r.logprobs.length - V);
      let best = 0;
      for (let v = 1; v < V; v++) if ((last[v] as number) > (last[best] as number)) best = v;
      tokens.push(best);
      logprobs.push(last[best] as number);
      r = await dec.step([best], r.cache);
    }
    expect(tokens).toEqual(sampled.tokens);
    expect(mae(logprobs, sampled.logprobs)).toBeLessThan(1e-4);
    await dec.release();
  });
});

describe.each(PARITY_CASES)('ONNX serving graph against transformers (float64): %s', (name) => {
  it('prompt logprobs of the base model, its LoRA adapter merged in', async () => {
    const dir = join(PARITY_DIR, name);
    const c = loadCase(name);
    const config = parseHfConfig(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
    const weights = parseSafetensors(readFileSync(join(dir, 'model.safetensors'))).tensors;
    if (c.lora) {
      // what a deployment of a LoRA fine-tune serves: W + (alpha/r)·B·A
      const adapter = parseSafetensors(readFileSync(join(dir, 'adapter.safetensors'))).tensors;
      for (const [key, a] of adapter) {
        if (!key.endsWith('.lora_A.weight')) continue;
        const target = key.replace('.lora_A.weight', '.weight');
        const b = adapter.get(key.replace('lora_A', 'lora_B'))!;
        const w = weights.get(target)!;
        const [out, inDim] = w.shape as [number, number];
        const data = mergeLinear(
          w.data,
          a.data,
          b.data,
          c.lora.alpha / c.lora.rank,
          out,
          inDim,
          c.lora.rank,
        );
        weights.set(target, { shape: w.shape, data });
      }
    }
    const dec = await OnnxDecoder.create(config, weights);
    const got: number[] = [];
    for (const s of c.sequences) {
      // logprob of targets[i] after tokens[..i]: the row of position i
      const V = config.vocabSize;
      const rows = (await dec.step(s.tokens)).logprobs;
      s.targets.forEach((t, i) => {
        got.push(rows[i * V + t] as number);
      });
    }
    await dec.release();
    const err = relativeError(got, c.expected.get('logprobs')!.data);
    console.log(JSON.stringify({ onnx_parity: name, logprobs_max_rel_err: err }));
    expect(err).toBeLessThan(1e-5);
  });
});
