// HuggingFace config.json for the decoder families the engine runs (Llama 1-3.x and
// SmolLM-style Llama, Mistral, Qwen2/2.5, Qwen3 dense), validated and mapped to the engine's
// configuration.
//
// Never a silent default. Every key of a config.json is one of three things: read here (its
// value checked against what the engine computes), listed in HARMLESS_FIELDS (metadata, token
// ids, generation defaults: nothing that changes the logits), or a problem that names it. A
// missing key takes the value the family's transformers config class gives it, so a config
// means here exactly what it means to transformers. RoPE is read from the classic top-level form
// (rope_theta, rope_scaling) and from transformers 5's rope_parameters; both give one result.
import { readFile } from 'node:fs/promises';
import { z } from 'zod';

export const HF_MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'qwen3'] as const;
export type HfModelType = (typeof HF_MODEL_TYPES)[number];

/** RoPE frequency scaling (transformers' rope_type `linear` or `llama3`). */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositions: number;
    };

export interface ModelConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  maxPositions: number;
  tieWordEmbeddings: boolean;
  qkNorm: boolean;
  /** Biases on q_proj, k_proj and v_proj (Qwen2; Llama and Qwen3 with attention_bias). Absent: none. */
  qkvBias?: boolean;
  /** Bias on o_proj (Llama and Qwen3 with attention_bias). Absent: none. */
  oProjBias?: boolean;
  /** RoPE frequency scaling; absent or null: plain RoPE. */
  ropeScaling?: RopeScaling | null;
  /** The HF family, written back on export (the math is fixed by the fields above). */
  modelType?: HfModelType;
}

export class ConfigError extends Error {
  /** Every problem found, each naming its field (`(root)` for the document itself). */
  readonly problems: ConfigProblem[];
  constructor(message: string, problems: ConfigProblem[] = []) {
    super(message);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface ConfigProblem {
  /** Dotted path of the field in config.json (`rope_scaling.rope_type`), or `(root)`. */
  field: string;
  message: string;
}

// --------------------------------------------------------------------------------------
// The families, as transformers' config and modeling classes define them
// --------------------------------------------------------------------------------------

interface Family {
  architecture: string;
  /** max_position_embeddings when the key is missing. */
  maxPositions: number;
  /** head_dim when missing: hidden_size // num_attention_heads, or a fixed number. */
  headDim: 'derived' | number;
  /** Whether head_dim may be null (meaning derived); Qwen's attention cannot build with null. */
  headDimNullable: boolean;
  /** num_key_value_heads when missing (null always means num_attention_heads). */
  numKvHeads: 'heads' | number;
  /** transformers refuses hidden_size not divisible by num_attention_heads (LlamaConfig). */
  headsDivideHidden: boolean;
  qkNorm: boolean;
  /** attention_bias: read (biases on q, k, v and o together), q/k/v always biased, or none. */
  bias: 'attention_bias' | 'qkv' | 'none';
  /** How the family turns sliding-window keys into per-layer windows. */
  sliding: 'mistral' | 'qwen' | 'none';
  /** Keys only this family's config class reads (beyond the shared ones). */
  fields: readonly string[];
}

const FAMILIES: Record<HfModelType, Family> = {
  llama: {
    architecture: 'LlamaForCausalLM',
    maxPositions: 2048,
    headDim: 'derived',
    headDimNullable: true,
    numKvHeads: 'heads',
    headsDivideHidden: true,
    qkNorm: false,
    bias: 'attention_bias',
    sliding: 'none',
    fields: ['attention_bias'],
  },
  mistral: {
    architecture: 'MistralForCausalLM',
    maxPositions: 4096 * 32,
    headDim: 'derived',
    headDimNullable: true,
    numKvHeads: 8,
    headsDivideHidden: false,
    qkNorm: false,
    bias: 'none',
    sliding: 'mistral',
    fields: ['sliding_window', 'attention_bias'],
  },
  qwen2: {
    architecture: 'Qwen2ForCausalLM',
    maxPositions: 32768,
    headDim: 'derived',
    headDimNullable: false,
    numKvHeads: 32,
    headsDivideHidden: false,
    qkNorm: false,
    bias: 'qkv',
    sliding: 'qwen',
    fields: [
      'attention_bias',
      'use_sliding_window',
      'sliding_window',
      'max_window_layers',
      'layer_types',
    ],
  },
  qwen3: {
    architecture: 'Qwen3ForCausalLM',
    maxPositions: 32768,
    headDim: 128,
    headDimNullable: false,
    numKvHeads: 32,
    headsDivideHidden: false,
    qkNorm: true,
    bias: 'attention_bias',
    sliding: 'qwen',
    fields: [
      'attention_bias',
      'use_sliding_window',
      'sliding_window',
      'max_window_layers',
      'layer_types',
    ],
  },
};

/** Defaults every family shares (transformers' config classes agree on these). */
const SHARED_DEFAULTS = { rmsNormEps: 1e-6, ropeTheta: 10000, slidingWindow: 4096 };

/**
 * Keys that do not change the model's logits or gradients: provenance, token ids (the
 * tokenizer's business), generation defaults, and flags of transformers' own plumbing.
 */
export const HARMLESS_FIELDS: ReadonlySet<string> = new Set([
  'architectures',
  'model_type',
  'transformers_version',
  'torch_dtype',
  'dtype',
  '_name_or_path',
  'name_or_path',
  '_attn_implementation_autoset',
  '_attn_implementation', // which kernel transformers runs attention with, not what it computes
  'keys_to_ignore_at_inference',
  'bos_token_id',
  'eos_token_id',
  'pad_token_id',
  'sep_token_id',
  'decoder_start_token_id',
  'initializer_range',
  'use_cache',
  'pretraining_tp', // transformers 4 split Llama's matmuls into this many slices: the same math
  'max_sequence_length', // Llama 1 configs: a note, not read by transformers
  'is_llama_config', // SmolLM (nanotron) export marker
  'output_attentions',
  'output_hidden_states',
  'return_dict',
  'torchscript',
  'id2label',
  'label2id',
  'num_labels',
  'problem_type',
  'tokenizer_class',
  'prefix',
  'task_specific_params',
  'finetuning_task',
  'is_decoder',
  'is_encoder_decoder',
  'add_cross_attention',
  'tie_encoder_decoder',
  'cross_attention_hidden_size',
  'chunk_size_feed_forward',
  'pruned_heads',
  'tf_legacy_loss',
  'use_bfloat16',
  // generation defaults older transformers wrote into config.json
  'max_length',
  'min_length',
  'do_sample',
  'early_stopping',
  'num_beams',
  'num_beam_groups',
  'diversity_penalty',
  'temperature',
  'top_k',
  'top_p',
  'typical_p',
  'repetition_penalty',
  'length_penalty',
  'no_repeat_ngram_size',
  'encoder_no_repeat_ngram_size',
  'bad_words_ids',
  'num_return_sequences',
  'output_scores',
  'return_dict_in_generate',
  'forced_bos_token_id',
  'forced_eos_token_id',
  'remove_invalid_values',
  'exponential_decay_length_penalty',
  'suppress_tokens',
  'begin_suppress_tokens',
]);

/** Keys of mixture-of-experts configs (Mixtral, Qwen2-MoE, Qwen3-MoE, DeepSeek). */
const MOE_FIELDS = new Set([
  'num_experts',
  'num_local_experts',
  'num_experts_per_tok',
  'moe_intermediate_size',
  'shared_expert_intermediate_size',
  'decoder_sparse_step',
  'mlp_only_layers',
  'norm_topk_prob',
  'router_aux_loss_coef',
  'output_router_logits',
  'router_jitter_noise',
  'n_routed_experts',
  'n_shared_experts',
  'first_k_dense_replace',
  'moe_layer_freq',
]);

// --------------------------------------------------------------------------------------
// The schema of the keys that shape the math
// --------------------------------------------------------------------------------------

const posInt = z.number().int().positive();
const ropeObject = z.record(z.string(), z.unknown());

/** config.json keys that change the math, with their types (family rules come after). */
export const hfConfigSchema = z.looseObject({
  model_type: z.enum(HF_MODEL_TYPES, {
    error: (i) =>
      i.input === undefined
        ? 'is missing (one of llama, mistral, qwen2, qwen3)'
        : `${JSON.stringify(i.input)} is not a supported architecture (supported: ${HF_MODEL_TYPES.join(', ')})`,
  }),
  architectures: z.array(z.string()).optional(),
  vocab_size: posInt,
  hidden_size: posInt,
  intermediate_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: posInt.nullish(),
  head_dim: posInt.nullish(),
  rms_norm_eps: z.number().positive().optional(),
  max_position_embeddings: posInt.optional(),
  tie_word_embeddings: z.boolean().optional(),
  hidden_act: z.string().optional(),
  attention_bias: z.boolean().optional(),
  attention_dropout: z.number().min(0).optional(),
  mlp_bias: z.boolean().optional(),
  rope_theta: z.number().positive().optional(),
  rope_scaling: ropeObject.nullish(),
  rope_parameters: ropeObject.nullish(),
  partial_rotary_factor: z.number().positive().optional(),
  rope_interleaved: z.boolean().optional(),
  sliding_window: posInt.nullish(),
  use_sliding_window: z.boolean().optional(),
  max_window_layers: z.number().int().nonnegative().optional(),
  layer_types: z.array(z.string()).optional(),
  use_mrope: z.boolean().optional(),
});

export type HfConfig = z.infer<typeof hfConfigSchema>;

/** Keys read by hfConfigSchema and the family rules (for the unknown-key check). */
const MATH_FIELDS = new Set(Object.keys(hfConfigSchema.shape));
/** Read by the schema for some families only. */
const FAMILY_FIELDS = new Set(Object.values(FAMILIES).flatMap((f) => f.fields));

// --------------------------------------------------------------------------------------
// Checking
// --------------------------------------------------------------------------------------

class Problems {
  readonly list: ConfigProblem[] = [];
  add(field: string, message: string): void {
    this.list.push({ field, message });
  }
}

/** Every key that is neither read nor harmless. */
function unknownKeys(raw: Record<string, unknown>, family: Family | null, p: Problems): void {
  for (const key of Object.keys(raw)) {
    if (HARMLESS_FIELDS.has(key)) continue;
    if (MOE_FIELDS.has(key)) {
      p.add(key, 'mixture-of-experts models are not supported (dense decoders only)');
      continue;
    }
    if (key === 'quantization_config') {
      p.add(key, 'quantized checkpoints are not supported; import the unquantized weights');
      continue;
    }
    if (!MATH_FIELDS.has(key)) {
      p.add(
        key,
        'is not understood by temper, and may change the model; refusing rather than ignoring it',
      );
      continue;
    }
    // another family's switch, left off (null/false), is as good as absent
    const value = raw[key];
    if (
      family &&
      FAMILY_FIELDS.has(key) &&
      !family.fields.includes(key) &&
      value !== null &&
      value !== false
    )
      p.add(
        key,
        `is not a field of ${family.architecture} (transformers ignores it there), so its intent is unclear; remove it`,
      );
  }
}

interface Rope {
  theta: number;
  scaling: RopeScaling | null;
}

const ROPE_KEYS: Record<string, readonly string[]> = {
  default: [],
  linear: ['factor'],
  llama3: ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'],
};

/**
 * A rope_scaling / rope_parameters object → scaling (theta is read by the caller). A llama3
 * scaling without original_max_position_embeddings takes max_position_embeddings, as
 * transformers' standardize_rope_params does.
 */
function readRopeObject(
  obj: Record<string, unknown>,
  where: string,
  maxPositions: number,
  p: Problems,
): RopeScaling | null | undefined {
  const typeKey = 'rope_type' in obj ? 'rope_type' : 'type' in obj ? 'type' : null;
  const type = typeKey ? obj[typeKey] : 'default';
  if (typeof type !== 'string') {
    p.add(`${where}.${typeKey ?? 'rope_type'}`, 'must be a string');
    return undefined;
  }
  const wanted = ROPE_KEYS[type];
  if (!wanted) {
    p.add(
      `${where}.${typeKey}`,
      `rope_type ${JSON.stringify(type)} is not supported (supported: default, linear, llama3)`,
    );
    return undefined;
  }
  let ok = true;
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'rope_type' || k === 'type' || k === 'rope_theta') continue;
    if (k === 'partial_rotary_factor') {
      if (v !== 1) {
        p.add(
          `${where}.${k}`,
          `partial rotary embeddings are not supported (got ${JSON.stringify(v)}, need 1)`,
        );
        ok = false;
      }
      continue;
    }
    if (!wanted.includes(k)) {
      p.add(
        `${where}.${k}`,
        `is not a parameter of rope_type ${JSON.stringify(type)}; refusing rather than ignoring it`,
      );
      ok = false;
    }
  }
  const num = (k: string, check: (x: number) => boolean, rule: string): number => {
    const v = obj[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) {
      p.add(
        `${where}.${k}`,
        v === undefined
          ? `is required for rope_type ${JSON.stringify(type)}`
          : `must be ${rule} (got ${JSON.stringify(v)})`,
      );
      ok = false;
      return Number.NaN;
    }
    return v;
  };
  if (type === 'default') return ok ? null : undefined;
  const factor = num('factor', (x) => x >= 1, 'a number >= 1');
  if (type === 'linear') return ok ? { type, factor } : undefined;
  const lowFreqFactor = num('low_freq_factor', (x) => x > 0, 'a positive number');
  const highFreqFactor = num('high_freq_factor', (x) => x > 0, 'a positive number');
  const originalMaxPositions =
    obj.original_max_position_embeddings === undefined
      ? maxPositions
      : num(
          'original_max_position_embeddings',
          (x) => Number.isInteger(x) && x > 0,
          'a positive integer',
        );
  if (ok && highFreqFactor <= lowFreqFactor) {
    p.add(`${where}.high_freq_factor`, `must be greater than low_freq_factor (${lowFreqFactor})`);
    ok = false;
  }
  return ok
    ? { type: 'llama3', factor, lowFreqFactor, highFreqFactor, originalMaxPositions }
    : undefined;
}

function sameScaling(a: RopeScaling | null, b: RopeScaling | null): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** RoPE from rope_parameters (transformers 5) and/or rope_theta + rope_scaling (classic). */
function readRope(c: HfConfig, maxPositions: number, p: Problems): Rope | undefined {
  const before = p.list.length;
  if (c.partial_rotary_factor !== undefined && c.partial_rotary_factor !== 1)
    p.add(
      'partial_rotary_factor',
      `partial rotary embeddings are not supported (got ${c.partial_rotary_factor}, need 1)`,
    );
  let classic: RopeScaling | null | undefined = null;
  if (c.rope_scaling) classic = readRopeObject(c.rope_scaling, 'rope_scaling', maxPositions, p);
  if (c.rope_parameters) {
    const rp = c.rope_parameters;
    const theta = rp.rope_theta;
    if (theta !== undefined && (typeof theta !== 'number' || !(theta > 0)))
      p.add(
        'rope_parameters.rope_theta',
        `must be a positive number (got ${JSON.stringify(theta)})`,
      );
    const scaling = readRopeObject(rp, 'rope_parameters', maxPositions, p);
    if (p.list.length > before || scaling === undefined || classic === undefined) return undefined;
    const t = typeof theta === 'number' ? theta : undefined;
    // Both forms present (a config touched by both transformers generations): they must agree.
    if (c.rope_theta !== undefined && t !== undefined && c.rope_theta !== t)
      p.add(
        'rope_theta',
        `is ${c.rope_theta} but rope_parameters.rope_theta is ${t}; they must agree`,
      );
    if (c.rope_scaling && !sameScaling(classic, scaling))
      p.add('rope_scaling', 'disagrees with rope_parameters; they must describe the same RoPE');
    if (p.list.length > before) return undefined;
    return { theta: t ?? c.rope_theta ?? SHARED_DEFAULTS.ropeTheta, scaling };
  }
  if (classic === undefined || p.list.length > before) return undefined;
  return { theta: c.rope_theta ?? SHARED_DEFAULTS.ropeTheta, scaling: classic };
}

/**
 * Sliding-window attention as each family defines it. The engine attends to the whole
 * causal prefix and never runs a sequence longer than max_position_embeddings, so a window
 * is exact only when it is at least that long; a shorter one is refused, naming the field.
 */
function checkSlidingWindow(c: HfConfig, family: Family, maxPositions: number, p: Problems): void {
  const refuse = (field: string, window: number, what: string) =>
    p.add(
      field,
      `sliding-window attention over ${window} tokens (${what}), shorter than max_position_embeddings (${maxPositions}); temper attends over the whole context and has no sliding window`,
    );
  if (family.sliding === 'mistral') {
    // MistralConfig: sliding_window defaults to 4096; null turns the window off.
    const w = c.sliding_window === undefined ? SHARED_DEFAULTS.slidingWindow : c.sliding_window;
    if (w !== null && w < maxPositions)
      refuse(
        'sliding_window',
        w,
        c.sliding_window === undefined
          ? 'the default (a missing sliding_window means 4096)'
          : 'this model',
      );
    return;
  }
  if (family.sliding !== 'qwen') return;
  // Qwen2/Qwen3: the window applies only with use_sliding_window, to layers listed as
  // "sliding_attention" in layer_types (by default, layers from max_window_layers on).
  // QwenConfig: sliding_window defaults to 4096 and is dropped without use_sliding_window.
  const window =
    c.use_sliding_window === true
      ? c.sliding_window === undefined
        ? SHARED_DEFAULTS.slidingWindow
        : c.sliding_window
      : null;
  const layers = c.num_hidden_layers;
  let types: string[];
  if (c.layer_types) {
    types = c.layer_types;
    if (types.length !== layers)
      p.add('layer_types', `has ${types.length} entries for ${layers} layers`);
    types.forEach((t, i) => {
      if (t !== 'full_attention' && t !== 'sliding_attention')
        p.add(`layer_types.${i}`, `${JSON.stringify(t)} is not an attention type temper knows`);
    });
  } else {
    const start = c.max_window_layers ?? 28;
    types = Array.from({ length: layers }, (_, i) =>
      window !== null && i >= start ? 'sliding_attention' : 'full_attention',
    );
  }
  const sliding = types.filter((t) => t === 'sliding_attention').length;
  // transformers builds such a model but fails on its first forward
  if (sliding > 0 && window === null && c.layer_types)
    p.add(
      'layer_types',
      `lists ${sliding} sliding_attention layers but no window is set (use_sliding_window is not true); transformers cannot run this config`,
    );
  if (sliding > 0 && window !== null && window < maxPositions)
    refuse(
      c.layer_types ? 'layer_types' : 'use_sliding_window',
      window,
      `${sliding} of ${layers} layers`,
    );
}

/**
 * Checks a parsed config.json and maps it to the engine's configuration. Collects every
 * problem (each naming its field) instead of stopping at the first.
 */
export function checkHfConfig(raw: unknown): {
  config: ModelConfig | null;
  problems: ConfigProblem[];
} {
  const p = new Problems();
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    p.add('(root)', 'config.json must hold a JSON object');
    return { config: null, problems: p.list };
  }
  const obj = raw as Record<string, unknown>;
  const type = obj.model_type;
  const family =
    typeof type === 'string' && (HF_MODEL_TYPES as readonly string[]).includes(type)
      ? FAMILIES[type as HfModelType]
      : null;
  unknownKeys(obj, family, p);
  const parsed = hfConfigSchema.safeParse(raw);
  if (!parsed.success) {
    for (const i of parsed.error.issues) p.add(i.path.join('.') || '(root)', i.message);
    return { config: null, problems: p.list };
  }
  if (!family) return { config: null, problems: p.list };
  const c = parsed.data;
  const modelType = c.model_type;

  if (
    c.architectures &&
    !(c.architectures.length === 1 && c.architectures[0] === family.architecture)
  )
    p.add(
      'architectures',
      `must be ["${family.architecture}"] for model_type ${modelType} (got ${JSON.stringify(c.architectures)})`,
    );
  if (c.hidden_act !== undefined && c.hidden_act !== 'silu' && c.hidden_act !== 'swish')
    p.add(
      'hidden_act',
      `${JSON.stringify(c.hidden_act)} is not supported (the engine's MLP is SwiGLU: silu)`,
    );
  if (c.attention_dropout !== undefined && c.attention_dropout !== 0)
    p.add(
      'attention_dropout',
      `must be 0: the engine trains without dropout (got ${c.attention_dropout})`,
    );
  if (c.mlp_bias === true) p.add('mlp_bias', 'biases on the MLP projections are not supported');
  if (c.rope_interleaved === true)
    p.add(
      'rope_interleaved',
      'interleaved RoPE is not supported (transformers applies rotate-half RoPE)',
    );
  if (c.use_mrope === true) p.add('use_mrope', 'multimodal RoPE is not supported');

  let qkvBias = false;
  let oProjBias = false;
  if (family.bias === 'attention_bias') qkvBias = oProjBias = c.attention_bias ?? false;
  else if (family.bias === 'qkv') {
    // Qwen2's attention always has q/k/v biases; its config class has no switch for them.
    if (c.attention_bias === false)
      p.add(
        'attention_bias',
        'Qwen2 always has q/k/v biases; attention_bias false cannot be honoured',
      );
    qkvBias = true;
  } else if (c.attention_bias === true)
    p.add('attention_bias', `${family.architecture} has no attention biases`);

  // a missing key takes the family's default; null means one kv head per query head
  const numKvHeads =
    c.num_key_value_heads === undefined
      ? family.numKvHeads === 'heads'
        ? c.num_attention_heads
        : family.numKvHeads
      : (c.num_key_value_heads ?? c.num_attention_heads);
  if (family.headsDivideHidden && c.hidden_size % c.num_attention_heads !== 0)
    p.add(
      'num_attention_heads',
      `hidden_size (${c.hidden_size}) must be a multiple of num_attention_heads (${c.num_attention_heads}); ${family.architecture} requires it`,
    );
  if (c.head_dim === null && !family.headDimNullable)
    p.add('head_dim', `must be a number for ${family.architecture} (null cannot be built)`);
  if (c.num_attention_heads % numKvHeads !== 0)
    p.add(
      'num_key_value_heads',
      `num_attention_heads (${c.num_attention_heads}) must be a multiple of num_key_value_heads (${numKvHeads})`,
    );
  const headDim =
    c.head_dim ??
    (family.headDim === 'derived'
      ? Math.floor(c.hidden_size / c.num_attention_heads)
      : family.headDim);
  if (headDim <= 0 || headDim % 2 !== 0)
    p.add(
      c.head_dim != null ? 'head_dim' : 'hidden_size',
      `head_dim must be a positive even integer (got ${headDim})`,
    );
  const maxPositions = c.max_position_embeddings ?? family.maxPositions;
  const rope = readRope(c, maxPositions, p);
  checkSlidingWindow(c, family, maxPositions, p);

  if (p.list.length > 0 || !rope) return { config: null, problems: p.list };
  return {
    config: {
      vocabSize: c.vocab_size,
      hiddenSize: c.hidden_size,
      intermediateSize: c.intermediate_size,
      numLayers: c.num_hidden_layers,
      numHeads: c.num_attention_heads,
      numKvHeads,
      headDim,
      rmsNormEps: c.rms_norm_eps ?? SHARED_DEFAULTS.rmsNormEps,
      ropeTheta: rope.theta,
      maxPositions,
      tieWordEmbeddings: c.tie_word_embeddings ?? false,
      qkNorm: family.qkNorm,
      qkvBias,
      oProjBias,
      ropeScaling: rope.scaling,
      modelType,
    },
    problems: [],
  };
}

/** One line per problem: `field: message`. */
export function formatConfigProblems(problems: ConfigProblem[]): string {
  return problems.map((q) => `${q.field}: ${q.message}`).join('; ');
}

export function parseHfConfig(raw: unknown, source = 'config.json'): ModelConfig {
  const { config, problems } = checkHfConfig(raw);
  if (!config) throw new ConfigError(`${source}: ${formatConfigProblems(problems)}`, problems);
  return config;
}

// --------------------------------------------------------------------------------------
// RoPE frequencies, one definition for the engine and the serving graph
// --------------------------------------------------------------------------------------

/**
 * The inverse frequencies of RoPE, head_dim/2 of them, in float64: θ^(−2i/d), then the
 * frequency scaling of transformers' rope_type `linear` (every frequency divided by the
 * factor) or `llama3` (long wavelengths divided by the factor, short ones kept, and a smooth
 * blend between low_freq_factor and high_freq_factor).
 */
export function ropeInverseFrequencies(c: ModelConfig): Float64Array {
  const half = c.headDim / 2;
  const out = new Float64Array(half);
  const s = c.ropeScaling ?? null;
  for (let i = 0; i < half; i++) {
    const base = 1 / c.ropeTheta ** ((2 * i) / c.headDim);
    if (!s) out[i] = base;
    else if (s.type === 'linear') out[i] = base / s.factor;
    else {
      const lowFreqWavelen = s.originalMaxPositions / s.lowFreqFactor;
      const highFreqWavelen = s.originalMaxPositions / s.highFreqFactor;
      const wavelen = (2 * Math.PI) / base;
      if (wavelen < highFreqWavelen) out[i] = base;
      else if (wavelen > lowFreqWavelen) out[i] = base / s.factor;
      else {
        const smooth =
          (s.originalMaxPositions / wavelen - s.lowFreqFactor) /
          (s.highFreqFactor - s.lowFreqFactor);
        out[i] = ((1 - smooth) * base) / s.factor + smooth * base;
      }
    }
  }
  return out;
}

// --------------------------------------------------------------------------------------
// Writing configs back, comparing them
// --------------------------------------------------------------------------------------

/** Whether HF family `t` can express configuration `c` (its q/k norm and biases). */
export function fitsModelType(c: ModelConfig, t: HfModelType): boolean {
  const qkv = c.qkvBias ?? false;
  const o = c.oProjBias ?? false;
  const f = FAMILIES[t];
  if (f.qkNorm !== c.qkNorm) return false;
  if (f.bias === 'attention_bias') return qkv === o;
  if (f.bias === 'qkv') return qkv && !o;
  return !qkv && !o;
}

/** The family a configuration is written as: its own, else the one its features imply. */
export function modelTypeOf(c: ModelConfig): HfModelType {
  const qkv = c.qkvBias ?? false;
  const o = c.oProjBias ?? false;
  const fits = (t: HfModelType) => fitsModelType(c, t);
  if (c.modelType && fits(c.modelType)) return c.modelType;
  if (c.modelType)
    throw new ConfigError(
      `model_type ${c.modelType} cannot express this configuration (q/k norm ${c.qkNorm}, q/k/v bias ${qkv}, o_proj bias ${o})`,
    );
  const found = (['llama', 'qwen3', 'qwen2'] as const).find(fits);
  if (!found)
    throw new ConfigError(
      `no supported model_type expresses this configuration (q/k norm ${c.qkNorm}, q/k/v bias ${qkv}, o_proj bias ${o})`,
    );
  return found;
}

/** RoPE scaling in the classic rope_scaling form (read by transformers 4 and 5 alike). */
function ropeScalingJson(s: RopeScaling | null | undefined): Record<string, unknown> | null {
  if (!s) return null;
  if (s.type === 'linear') return { rope_type: 'linear', factor: s.factor };
  return {
    rope_type: 'llama3',
    factor: s.factor,
    low_freq_factor: s.lowFreqFactor,
    high_freq_factor: s.highFreqFactor,
    original_max_position_embeddings: s.originalMaxPositions,
  };
}

/** Keys toHfConfig owns: a passed-through base config must not keep its own versions. */
export const OWNED_CONFIG_KEYS: readonly string[] = [...MATH_FIELDS, 'torch_dtype', 'dtype'];

export function toHfConfig(c: ModelConfig, modelType?: HfModelType): Record<string, unknown> {
  const type = modelTypeOf(modelType ? { ...c, modelType } : c);
  const family = FAMILIES[type];
  const out: Record<string, unknown> = {
    architectures: [family.architecture],
    model_type: type,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    max_position_embeddings: c.maxPositions,
    tie_word_embeddings: c.tieWordEmbeddings,
    hidden_act: 'silu',
  };
  if (family.bias === 'attention_bias') out.attention_bias = c.qkvBias ?? false;
  if (c.ropeScaling) out.rope_scaling = ropeScalingJson(c.ropeScaling);
  // MistralConfig reads a missing sliding_window as 4096; Qwen's window is off by default.
  if (family.sliding === 'mistral') out.sliding_window = null;
  out.torch_dtype = 'float32';
  return out;
}

export async function readHfConfig(path: string): Promise<ModelConfig> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(`${path}: cannot read config (${(err as Error).message})`, [
      { field: '(root)', message: (err as Error).message },
    ]);
  }
  return parseHfConfig(raw, path);
}

/** The configuration with every optional field spelled out (absent means off). */
function canonical(c: ModelConfig): Record<string, unknown> {
  return {
    ...c,
    qkvBias: c.qkvBias ?? false,
    oProjBias: c.oProjBias ?? false,
    ropeScaling: c.ropeScaling ?? null,
    modelType: undefined,
  };
}

/**
 * Where two configurations compute differently (`null` when they agree). The family name is
 * not compared: it changes how a config is written, not what it computes.
 */
export function configDifference(
  a: ModelConfig,
  b: ModelConfig,
  names: [string, string] = ['the first', 'the second'],
): string | null {
  const x = canonical(a);
  const y = canonical(b);
  for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) {
    if (JSON.stringify(x[k]) !== JSON.stringify(y[k]))
      return `${k} is ${JSON.stringify(x[k])} in ${names[0]}, ${JSON.stringify(y[k])} in ${names[1]}`;
  }
  return null;
}

/** Number of parameters of the base model (embeddings counted once when tied). */
export function countParameters(c: ModelConfig): number {
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const perLayer =
    2 * c.hiddenSize +
    c.hiddenSize * (q + 2 * kv) +
    q * c.hiddenSize +
    3 * c.hiddenSize * c.intermediateSize +
    (c.qkNorm ? 2 * c.headDim : 0) +
    (c.qkvBias ? q + 2 * kv : 0) +
    (c.oProjBias ? c.hiddenSize : 0);
  const embed = c.vocabSize * c.hiddenSize;
  return embed * (c.tieWordEmbeddings ? 1 : 2) + c.numLayers * perLayer + c.hiddenSize;
}
