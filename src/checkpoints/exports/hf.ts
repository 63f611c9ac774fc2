// Sampler exports in HuggingFace layout: config.json, generation_config.json, tokenizer files
// passed through from the base model, and the weights as model.safetensors or as shards
// under a size limit with model.safetensors.index.json, in float32 or bfloat16.
import {
  checkHfConfig,
  configDifference,
  fitsModelType,
  HF_MODEL_TYPES,
  type ModelConfig,
  OWNED_CONFIG_KEYS,
  toHfConfig,
} from '../../engine/index.js';
import type { TransformerModel } from '../../engine/model.js';
import {
  planShards,
  safetensorsReadable,
  safetensorsTensors,
  type TensorMap,
  type TensorSource,
  type TensorSpec,
  type WriteDtype,
} from '../safetensors.js';
import {
  asSource,
  type ExportFile,
  type ExportManifest,
  type ExportSource,
  type ExportTarget,
  writeExport,
} from './files.js';

/** Files a base model directory may hold that a served model needs next to its weights. */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
  'tokenizer.model',
  'chat_template.jinja',
  'chat_template.json',
] as const;

/** Tensors to write: names and shapes in file order, data asked for one tensor at a time. */
export interface WeightsSpec {
  specs: TensorSpec[];
  source: TensorSource;
}

export function tensorMapWeights(tensors: TensorMap): WeightsSpec {
  return {
    specs: [...tensors.keys()].sort().map((name) => ({ name, shape: tensors.get(name)!.shape })),
    source: (name) => tensors.get(name)!.data,
  };
}

/** The model's base weights (no adapter tensors), read from the engine when written. */
export function modelWeights(model: TransformerModel): WeightsSpec {
  const specs = model
    .tensorInfo()
    .filter((t) => !t.name.includes('.lora_'))
    .map((t) => ({ name: t.name, shape: t.shape }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  // Zero-copy views: the export streams the engine's memory straight into the files.
  return { specs, source: (name) => model.tensorView(name)! };
}

export interface HfExportOptions {
  dtype?: WriteDtype;
  /** Shard size limit in tensor bytes (default 5 GB, HuggingFace's). */
  maxShardBytes?: number;
  /** Base model whose tokenizer files, generation_config.json and extra config.json keys pass through. */
  baseModelDir?: string | ExportSource;
  /** Overrides the base model's generation_config.json. */
  generationConfig?: Record<string, unknown>;
  /** Extra files by name (README.md, ...). */
  files?: Record<string, string | Buffer>;
}

async function readJsonObject(
  source: ExportSource,
  path: string,
): Promise<Record<string, unknown> | null> {
  if ((await source.size(path)) === null) return null;
  const raw: unknown = JSON.parse((await source.read(path)).toString('utf8'));
  return typeof raw === 'object' && raw !== null && !Array.isArray(raw)
    ? (raw as Record<string, unknown>)
    : null;
}

/**
 * config.json for `config`. A base model whose config.json describes exactly this
 * configuration keeps its own text (its RoPE spelling, window keys, token ids), so snapshots
 * validate against it key for key; otherwise the math keys are written here and the base
 * contributes only the keys that cannot change the math.
 */
function configJson(
  config: ModelConfig,
  baseConfig: Record<string, unknown> | null,
): Record<string, unknown> {
  const { dtype: _dropped, ...base } = baseConfig ?? {};
  const parsed = baseConfig ? checkHfConfig(baseConfig).config : null;
  if (parsed && configDifference(parsed, config) === null) return base;
  // The family: the config's own, else the base model's when it can express the config (a
  // Mistral stays a Mistral), else the one the config's features imply.
  const baseType = HF_MODEL_TYPES.find((t) => t === base.model_type);
  const ours = toHfConfig(
    config,
    config.modelType ?? (baseType && fitsModelType(config, baseType) ? baseType : undefined),
  );
  const harmless = Object.entries(base).filter(([k]) => !OWNED_CONFIG_KEYS.includes(k));
  return { ...Object.fromEntries(harmless), ...ours };
}

/** The files of an HF model directory for `config` and `weights`. */
export async function hfModelFiles(
  config: ModelConfig,
  weights: WeightsSpec,
  opts: HfExportOptions = {},
): Promise<ExportFile[]> {
  const dtype = opts.dtype ?? 'F32';
  const base = opts.baseModelDir !== undefined ? asSource(opts.baseModelDir) : null;
  const baseConfig = base ? await readJsonObject(base, 'config.json') : null;
  const hfConfig = {
    ...configJson(config, baseConfig),
    torch_dtype: dtype === 'BF16' ? 'bfloat16' : 'float32',
  };
  const files: ExportFile[] = [
    { path: 'config.json', body: () => `${JSON.stringify(hfConfig, null, 2)}\n` },
  ];
  if (opts.generationConfig) {
    const text = `${JSON.stringify(opts.generationConfig, null, 2)}\n`;
    files.push({ path: 'generation_config.json', body: () => text });
  } else if (base && (await base.size('generation_config.json')) !== null) {
    files.push({
      path: 'generation_config.json',
      body: () => base.stream('generation_config.json'),
    });
  }
  if (base)
    for (const name of TOKENIZER_FILES)
      if ((await base.size(name)) !== null)
        files.push({ path: name, body: () => base.stream(name) });
  for (const [name, body] of Object.entries(opts.files ?? {}))
    files.push({ path: name, body: () => body });
  const plan = planShards(weights.specs, { dtype, maxShardBytes: opts.maxShardBytes });
  const write = { dtype, metadata: { format: 'pt' } };
  for (const shard of plan.files)
    files.push({
      path: shard.file,
      body: () => safetensorsReadable(shard.specs, weights.source, write).stream,
      tensors: safetensorsTensors(shard.specs, weights.source, write),
    });
  if (plan.index) {
    const text = `${JSON.stringify(plan.index, null, 2)}\n`;
    files.push({ path: plan.indexFile, body: () => text });
  }
  return files;
}

export interface ExportCommitOptions {
  /** Recorded in the manifest (e.g. accounts/temper/models/byte-lm-3m). */
  baseModel?: string;
  ttlSeconds?: number;
}

/** Exports the model's base weights as an HF model directory (kind hf_base). */
export async function exportHfModel(
  model: TransformerModel,
  target: ExportTarget,
  opts: HfExportOptions & ExportCommitOptions = {},
): Promise<ExportManifest> {
  const files = await hfModelFiles(model.config, modelWeights(model), opts);
  return writeExport(target, files, {
    kind: 'hf_base',
    baseModel: opts.baseModel,
    ttlSeconds: opts.ttlSeconds,
  });
}
