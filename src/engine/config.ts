// HuggingFace-style config.json for the Llama/Qwen family, validated and mapped to the
// engine's configuration.
import { readFile } from 'node:fs/promises';
import { z } from 'zod';

export const hfConfigSchema = z
  .object({
    model_type: z.enum(['llama', 'qwen2', 'qwen3', 'temper']).default('llama'),
    vocab_size: z.number().int().positive(),
    hidden_size: z.number().int().positive(),
    intermediate_size: z.number().int().positive(),
    num_hidden_layers: z.number().int().positive(),
    num_attention_heads: z.number().int().positive(),
    num_key_value_heads: z.number().int().positive().optional(),
    head_dim: z.number().int().positive().optional(),
    rms_norm_eps: z.number().positive().default(1e-6),
    rope_theta: z.number().positive().default(10000),
    max_position_embeddings: z.number().int().positive().default(2048),
    tie_word_embeddings: z.boolean().default(false),
    hidden_act: z.literal('silu').default('silu'),
    attention_bias: z.literal(false).default(false),
    /** temper extension: force q/k RMSNorm on or off (Qwen3 has it; Llama does not). */
    qk_norm: z.boolean().optional(),
  })
  .passthrough();

export type HfConfig = z.infer<typeof hfConfigSchema>;

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
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export function parseHfConfig(raw: unknown, source = 'config.json'): ModelConfig {
  const parsed = hfConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ');
    throw new ConfigError(`${source}: ${issues}`);
  }
  const c = parsed.data;
  const numKvHeads = c.num_key_value_heads ?? c.num_attention_heads;
  if (c.num_attention_heads % numKvHeads !== 0)
    throw new ConfigError(
      `${source}: num_attention_heads (${c.num_attention_heads}) must be a multiple of num_key_value_heads (${numKvHeads})`,
    );
  const headDim = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0)
    throw new ConfigError(`${source}: head_dim must be an even integer (got ${headDim})`);
  return {
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads,
    headDim,
    rmsNormEps: c.rms_norm_eps,
    ropeTheta: c.rope_theta,
    maxPositions: c.max_position_embeddings,
    tieWordEmbeddings: c.tie_word_embeddings,
    qkNorm: c.qk_norm ?? c.model_type === 'qwen3',
  };
}

export function toHfConfig(
  c: ModelConfig,
  modelType: 'llama' | 'qwen3' = c.qkNorm ? 'qwen3' : 'llama',
): Record<string, unknown> {
  return {
    architectures: [modelType === 'qwen3' ? 'Qwen3ForCausalLM' : 'LlamaForCausalLM'],
    model_type: modelType,
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
    attention_bias: false,
    torch_dtype: 'float32',
  };
}

export async function readHfConfig(path: string): Promise<ModelConfig> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(`${path}: cannot read config (${(err as Error).message})`);
  }
  return parseHfConfig(raw, path);
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
    (c.qkNorm ? 2 * c.headDim : 0);
  const embed = c.vocabSize * c.hiddenSize;
  return embed * (c.tieWordEmbeddings ? 1 : 2) + c.numLayers * perLayer + c.hiddenSize;
}
