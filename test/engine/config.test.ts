// config.json of the real families (as their hubs publish them), both RoPE spellings, and
// every refusal naming its field.
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  type ConfigProblem,
  checkHfConfig,
  configDifference,
  countParameters,
  HARMLESS_FIELDS,
  hfConfigSchema,
  type ModelConfig,
  parseHfConfig,
  ropeInverseFrequencies,
  toHfConfig,
} from '../../src/engine/config.js';
import { TransformerModel } from '../../src/engine/model.js';
import { baseTensorShapes } from '../../src/engine/tensors.js';

const LLAMA2_7B = {
  architectures: ['LlamaForCausalLM'],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 11008,
  max_position_embeddings: 4096,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 32,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  tie_word_embeddings: false,
  torch_dtype: 'float16',
  transformers_version: '4.31.0.dev0',
  use_cache: true,
  vocab_size: 32000,
};

const LLAMA32_1B = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  head_dim: 64,
  hidden_act: 'silu',
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 16,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    factor: 32.0,
    high_freq_factor: 4.0,
    low_freq_factor: 1.0,
    original_max_position_embeddings: 8192,
    rope_type: 'llama3',
  },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.45.0.dev0',
  use_cache: true,
  vocab_size: 128256,
};

/** The same model as transformers 5 writes it: RoPE inside rope_parameters. */
const LLAMA32_1B_V5 = (() => {
  const { rope_scaling, rope_theta, torch_dtype, ...rest } = LLAMA32_1B;
  return {
    ...rest,
    dtype: torch_dtype,
    rope_parameters: { ...rope_scaling, rope_theta },
    transformers_version: '5.24.0',
  };
})();

const SMOLLM2_135M = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 0,
  eos_token_id: 0,
  hidden_act: 'silu',
  hidden_size: 576,
  initializer_range: 0.041666666666666664,
  intermediate_size: 1536,
  is_llama_config: true,
  max_position_embeddings: 8192,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 9,
  num_hidden_layers: 30,
  num_key_value_heads: 3,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_interleaved: false,
  rope_scaling: null,
  rope_theta: 100000,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.42.3',
  use_cache: true,
  vocab_size: 49152,
};

const MISTRAL_7B_V03 = {
  architectures: ['MistralForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: 'mistral',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_theta: 1000000.0,
  sliding_window: null,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.42.0.dev0',
  use_cache: true,
  vocab_size: 32768,
};

const QWEN25_05B = {
  architectures: ['Qwen2ForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151643,
  hidden_act: 'silu',
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 24,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.40.1',
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

const QWEN3_06B = {
  architectures: ['Qwen3ForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: 'silu',
  hidden_size: 1024,
  initializer_range: 0.02,
  intermediate_size: 3072,
  max_position_embeddings: 40960,
  max_window_layers: 28,
  model_type: 'qwen3',
  num_attention_heads: 16,
  num_hidden_layers: 28,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.51.0',
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

function problems(raw: unknown): ConfigProblem[] {
  return checkHfConfig(raw).problems;
}

function fields(raw: unknown): string[] {
  return problems(raw).map((p) => p.field);
}

describe('config.json of real families', () => {
  it('Llama 2: heads derived from hidden size, plain RoPE at the default theta', () => {
    const c = parseHfConfig(LLAMA2_7B);
    expect(c).toMatchObject({
      headDim: 128,
      numKvHeads: 32,
      ropeTheta: 10000,
      ropeScaling: null,
      qkNorm: false,
      qkvBias: false,
      oProjBias: false,
      maxPositions: 4096,
      rmsNormEps: 1e-5,
      modelType: 'llama',
    });
  });

  it('Llama 3.2: llama3 RoPE scaling is read, not dropped', () => {
    const c = parseHfConfig(LLAMA32_1B);
    expect(c.ropeScaling).toEqual({
      type: 'llama3',
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositions: 8192,
    });
    expect(c.ropeTheta).toBe(500000);
    expect(c.tieWordEmbeddings).toBe(true);
    // long wavelengths are divided by the factor, short ones kept
    const plain = ropeInverseFrequencies({ ...c, ropeScaling: null });
    const scaled = ropeInverseFrequencies(c);
    expect(scaled[0]).toBe(plain[0]);
    expect(scaled[31]! / plain[31]!).toBeCloseTo(1 / 32, 12);
  });

  it('transformers 5 rope_parameters and the classic form give the same configuration', () => {
    expect(parseHfConfig(LLAMA32_1B_V5)).toEqual(parseHfConfig(LLAMA32_1B));
    const { rope_theta, ...qwenRest } = QWEN3_06B;
    const qwenV5 = { ...qwenRest, rope_parameters: { rope_theta, rope_type: 'default' } };
    expect(parseHfConfig(qwenV5)).toEqual(parseHfConfig(QWEN3_06B));
    // a linear scaling in the old `type` spelling
    const linearOld = { ...LLAMA2_7B, rope_scaling: { type: 'linear', factor: 2 } };
    const linearV5 = {
      ...LLAMA2_7B,
      rope_scaling: undefined,
      rope_parameters: { rope_type: 'linear', factor: 2, rope_theta: 10000 },
    };
    expect(parseHfConfig(linearV5)).toEqual(parseHfConfig(linearOld));
    expect(parseHfConfig(linearOld).ropeScaling).toEqual({ type: 'linear', factor: 2 });
    // both forms at once must agree
    expect(
      fields({ ...LLAMA32_1B, rope_parameters: { rope_theta: 10000, rope_type: 'default' } }),
    ).toEqual(['rope_theta', 'rope_scaling']);
  });

  it('SmolLM: a Llama with nine 64-wide heads, tied, nanotron markers harmless', () => {
    const c = parseHfConfig(SMOLLM2_135M);
    expect(c).toMatchObject({ headDim: 64, numHeads: 9, numKvHeads: 3, tieWordEmbeddings: true });
    expect(problems({ ...SMOLLM2_135M, rope_interleaved: true })).toEqual([
      { field: 'rope_interleaved', message: expect.stringMatching(/interleaved RoPE/) },
    ]);
  });

  it('Mistral without a sliding window', () => {
    const c = parseHfConfig(MISTRAL_7B_V03);
    expect(c).toMatchObject({ modelType: 'mistral', headDim: 128, qkvBias: false, ropeTheta: 1e6 });
  });

  it('Qwen2.5: q/k/v biases, sliding_window ignored without use_sliding_window', () => {
    const c = parseHfConfig(QWEN25_05B);
    expect(c).toMatchObject({ qkvBias: true, oProjBias: false, headDim: 64, qkNorm: false });
    const plain = parseHfConfig(LLAMA2_7B);
    expect(countParameters(c) - countParameters({ ...c, qkvBias: false })).toBe(
      24 * (896 + 2 * 2 * 64),
    );
    expect(plain.qkvBias).toBe(false);
  });

  it('Qwen3: q/k norm, head_dim independent of hidden/heads (and 128 when missing)', () => {
    const c = parseHfConfig(QWEN3_06B);
    expect(c).toMatchObject({ qkNorm: true, headDim: 128, numHeads: 16, hiddenSize: 1024 });
    const { head_dim: _, ...noHeadDim } = QWEN3_06B;
    expect(parseHfConfig(noHeadDim).headDim).toBe(128);
    expect(parseHfConfig({ ...QWEN3_06B, attention_bias: true })).toMatchObject({
      qkvBias: true,
      oProjBias: true,
    });
  });

  it("missing keys take the values transformers' config classes give them", () => {
    const { num_key_value_heads: _m, ...mistralNoKv } = MISTRAL_7B_V03;
    expect(parseHfConfig(mistralNoKv).numKvHeads).toBe(8); // MistralConfig's default
    expect(parseHfConfig({ ...MISTRAL_7B_V03, num_key_value_heads: null }).numKvHeads).toBe(32);
    const { num_key_value_heads: _q, ...qwenNoKv } = QWEN3_06B;
    expect(parseHfConfig({ ...qwenNoKv, num_attention_heads: 32 }).numKvHeads).toBe(32);
    const { num_key_value_heads: _l, ...llamaNoKv } = LLAMA32_1B;
    expect(parseHfConfig(llamaNoKv).numKvHeads).toBe(32);
    const { rms_norm_eps: _e, max_position_embeddings: _p, ...qwenNoEps } = QWEN25_05B;
    expect(parseHfConfig(qwenNoEps)).toMatchObject({ rmsNormEps: 1e-6, maxPositions: 32768 });
    // llama3 without its original context: max_position_embeddings (standardize_rope_params)
    const { original_max_position_embeddings: _o, ...scaling } = LLAMA32_1B.rope_scaling;
    expect(parseHfConfig({ ...LLAMA32_1B, rope_scaling: scaling }).ropeScaling).toMatchObject({
      originalMaxPositions: 131072,
    });
  });

  it('toHfConfig writes a config that parses back to the same configuration', () => {
    for (const raw of [
      LLAMA2_7B,
      LLAMA32_1B,
      SMOLLM2_135M,
      MISTRAL_7B_V03,
      QWEN25_05B,
      QWEN3_06B,
    ]) {
      const c = parseHfConfig(raw);
      const back = parseHfConfig(toHfConfig(c));
      expect(back).toEqual(c);
    }
    // a configuration without a family is written as the family its features imply
    const qwen2Like: ModelConfig = { ...parseHfConfig(QWEN25_05B), modelType: undefined };
    expect(toHfConfig(qwen2Like).model_type).toBe('qwen2');
    expect(() => toHfConfig({ ...parseHfConfig(QWEN25_05B), modelType: 'mistral' })).toThrow(
      ConfigError,
    );
  });

  it('configDifference ignores the family name and reads missing fields as off', () => {
    const c = parseHfConfig(LLAMA2_7B);
    const { qkvBias: _a, oProjBias: _b, ropeScaling: _c, modelType: _d, ...legacy } = c;
    expect(configDifference(legacy, c)).toBeNull();
    expect(configDifference(c, parseHfConfig(QWEN25_05B))).not.toBeNull();
    expect(configDifference(c, { ...c, ropeScaling: { type: 'linear', factor: 2 } })).toMatch(
      /^ropeScaling/,
    );
  });
});

describe('tensor layout', () => {
  it("baseTensorShapes is the engine's own set of base tensors, biases included", () => {
    const small = { vocab_size: 32, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2 };
    for (const raw of [
      { ...QWEN25_05B, ...small, num_attention_heads: 4, num_key_value_heads: 2 },
      {
        ...QWEN3_06B,
        ...small,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 16,
        attention_bias: true,
      },
      { ...LLAMA32_1B, ...small, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 4 },
      { ...MISTRAL_7B_V03, ...small, num_attention_heads: 4, num_key_value_heads: 4 },
    ]) {
      const c = parseHfConfig(raw);
      const engine = new TransformerModel(c, { threads: 1 }).tensorInfo();
      const ours = baseTensorShapes(c);
      expect(new Map(engine.map((t) => [t.name, t.shape]))).toEqual(ours);
      expect([...ours.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0)).toBe(
        countParameters(c),
      );
    }
  });
});

describe('refusals name their field', () => {
  const cases: [string, Record<string, unknown>, string, RegExp][] = [
    [
      'Mistral v0.1 window',
      { ...MISTRAL_7B_V03, sliding_window: 4096 },
      'sliding_window',
      /sliding-window attention over 4096/,
    ],
    [
      'Mistral default window',
      (({ sliding_window: _, ...r }) => r)(MISTRAL_7B_V03),
      'sliding_window',
      /missing sliding_window means 4096/,
    ],
    [
      'Qwen2 window on',
      { ...QWEN25_05B, use_sliding_window: true, sliding_window: 4096, max_window_layers: 21 },
      'use_sliding_window',
      /3 of 24 layers/,
    ],
    [
      'Qwen3 layer_types',
      {
        ...QWEN3_06B,
        use_sliding_window: true,
        sliding_window: 4096,
        layer_types: Array.from({ length: 28 }, (_, i) =>
          i % 2 ? 'sliding_attention' : 'full_attention',
        ),
      },
      'layer_types',
      /14 of 28 layers/,
    ],
    [
      'MoE',
      { ...QWEN3_06B, num_experts: 128, num_experts_per_tok: 8 },
      'num_experts',
      /mixture-of-experts/,
    ],
    [
      'yarn',
      {
        ...QWEN3_06B,
        rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32768 },
      },
      'rope_scaling.rope_type',
      /"yarn" is not supported/,
    ],
    [
      'dynamic v5',
      { ...LLAMA2_7B, rope_parameters: { rope_type: 'dynamic', factor: 2, rope_theta: 10000 } },
      'rope_parameters.rope_type',
      /"dynamic" is not supported/,
    ],
    [
      'llama3 without its factors',
      { ...LLAMA32_1B, rope_scaling: { rope_type: 'llama3', factor: 8 } },
      'rope_scaling.low_freq_factor',
      /required/,
    ],
    [
      'mistral attention_bias',
      { ...MISTRAL_7B_V03, attention_bias: true },
      'attention_bias',
      /has no attention biases|not a field/,
    ],
    [
      'qwen2 attention_bias false',
      { ...QWEN25_05B, attention_bias: false },
      'attention_bias',
      /always has q\/k\/v biases|not a field/,
    ],
    ['mlp_bias', { ...LLAMA2_7B, mlp_bias: true }, 'mlp_bias', /MLP/],
    ['gelu', { ...LLAMA2_7B, hidden_act: 'gelu' }, 'hidden_act', /not supported/],
    ['dropout', { ...LLAMA2_7B, attention_dropout: 0.1 }, 'attention_dropout', /without dropout/],
    [
      'quantized',
      { ...LLAMA2_7B, quantization_config: { quant_method: 'gptq' } },
      'quantization_config',
      /quantized/,
    ],
    ['unknown key', { ...LLAMA2_7B, logits_scaling: 4 }, 'logits_scaling', /not understood/],
    [
      'sliding_window on Llama',
      { ...LLAMA2_7B, sliding_window: 4096 },
      'sliding_window',
      /not a field of LlamaForCausalLM/,
    ],
    [
      'partial rotary',
      { ...LLAMA2_7B, partial_rotary_factor: 0.5 },
      'partial_rotary_factor',
      /partial rotary/,
    ],
    [
      'Mixtral',
      { ...MISTRAL_7B_V03, model_type: 'mixtral' },
      'model_type',
      /"mixtral" is not a supported architecture/,
    ],
    ['missing model_type', (({ model_type: _, ...r }) => r)(LLAMA2_7B), 'model_type', /missing/],
    [
      'wrong architectures',
      { ...QWEN25_05B, architectures: ['Qwen2ForSequenceClassification'] },
      'architectures',
      /Qwen2ForCausalLM/,
    ],
    ['odd head_dim', { ...LLAMA2_7B, head_dim: 7 }, 'head_dim', /even/],
    [
      'Llama heads not dividing hidden',
      { ...LLAMA2_7B, num_attention_heads: 24, num_key_value_heads: 8, head_dim: 128 },
      'num_attention_heads',
      /multiple of num_attention_heads/,
    ],
    ['Qwen head_dim null', { ...QWEN3_06B, head_dim: null }, 'head_dim', /must be a number/],
    [
      'Qwen window on, default 4096',
      (({ sliding_window: _, ...r }) => ({ ...r, use_sliding_window: true, max_window_layers: 0 }))(
        QWEN3_06B,
      ),
      'use_sliding_window',
      /over 4096 tokens \(28 of 28 layers\)/,
    ],
    [
      'rope parameter not of its type',
      { ...LLAMA2_7B, rope_scaling: { rope_type: 'linear', factor: 2, beta_fast: 32 } },
      'rope_scaling.beta_fast',
      /not a parameter/,
    ],
    [
      'v5 partial rotary',
      {
        ...LLAMA2_7B,
        rope_parameters: { rope_type: 'default', rope_theta: 10000, partial_rotary_factor: 0.5 },
      },
      'rope_parameters.partial_rotary_factor',
      /partial rotary/,
    ],
  ];
  it.each(cases)('%s', (_name, raw, field, message) => {
    const found = problems(raw);
    expect(found.map((p) => p.field)).toContain(field);
    expect(found.find((p) => p.field === field)?.message).toMatch(message);
    expect(() => parseHfConfig(raw)).toThrow(ConfigError);
    expect(() => parseHfConfig(raw)).toThrow(field);
  });

  it("another family's switches, left off, are as good as absent", () => {
    expect(parseHfConfig({ ...QWEN25_05B, attention_bias: true, mlp_bias: false }).qkvBias).toBe(
      true,
    );
    expect(
      parseHfConfig({ ...LLAMA2_7B, sliding_window: null, use_sliding_window: false }).modelType,
    ).toBe('llama');
    expect(parseHfConfig({ ...MISTRAL_7B_V03, attention_bias: false }).qkvBias).toBe(false);
    expect(problems({ ...QWEN25_05B, mlp_bias: true })).toHaveLength(1);
  });

  it('a window at least as long as the context is exact and accepted', () => {
    expect(parseHfConfig({ ...MISTRAL_7B_V03, sliding_window: 32768 }).modelType).toBe('mistral');
    expect(
      parseHfConfig({ ...QWEN25_05B, use_sliding_window: true, sliding_window: 32768 }).qkvBias,
    ).toBe(true);
  });

  it('no key is both harmless and read', () => {
    const read = Object.keys(hfConfigSchema.shape);
    expect(
      read.filter((k) => HARMLESS_FIELDS.has(k) && k !== 'architectures' && k !== 'model_type'),
    ).toEqual([]);
  });

  it('every problem at once, each with its field', () => {
    const raw = {
      ...LLAMA2_7B,
      vocab_size: -1,
      num_experts: 8,
      foo: 1,
      hidden_act: 7,
    };
    expect(fields(raw).sort()).toEqual(['foo', 'hidden_act', 'num_experts', 'vocab_size']);
    const err = (() => {
      try {
        parseHfConfig(raw, 'x/config.json');
      } catch (e) {
        return e as ConfigError;
      }
      return null;
    })();
    expect(err?.problems).toHaveLength(4);
    expect(err?.message).toMatch(/^x\/config\.json: /);
    expect(fields([])).toEqual(['(root)']);
  });
});
