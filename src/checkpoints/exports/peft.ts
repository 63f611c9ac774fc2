// LoRA exports in PEFT layout and loading them back.
//
// adapter_config.json: {peft_type: "LORA", task_type: "CAUSAL_LM", r, lora_alpha,
// target_modules, base_model_name_or_path, lora_dropout: 0, bias: "none", ...}.
// adapter_model.safetensors: PEFT names, which are the engine's names with the
// `base_model.model.` prefix: base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight.
// The scale is lora_alpha / r (no rsLoRA, no DoRA).
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { LORA_TARGETS, type LoraTarget, TransformerModel } from '../../engine/model.js';
import { CheckpointError } from '../dcp/errors.js';
import {
  openSafetensorsStream,
  parseSafetensors,
  SafetensorsError,
  safetensorsReadable,
  type TensorMap,
  type WriteDtype,
} from '../safetensors.js';
import {
  asSource,
  EXPORT_MANIFEST,
  type ExportFile,
  type ExportManifest,
  type ExportSource,
  type ExportTarget,
  readExportManifest,
  writeExport,
} from './files.js';
import type { ExportCommitOptions } from './hf.js';

export const PEFT_PREFIX = 'base_model.model.';
export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

export function toPeftName(engineName: string): string {
  return PEFT_PREFIX + engineName;
}

/** PEFT name → engine name (also accepts names that carry the adapter name, `.lora_A.default.weight`). */
export function fromPeftName(peftName: string): string | null {
  if (!peftName.startsWith(PEFT_PREFIX)) return null;
  return peftName
    .slice(PEFT_PREFIX.length)
    .replace(/\.(lora_[AB])\.[A-Za-z0-9_-]+\.weight$/, '.$1.weight');
}

/** The linear a LoRA tensor adapts: `model.layers.0.self_attn.q_proj.lora_A.weight` → q_proj. */
function targetOf(engineName: string): string | null {
  const m = /(?:^|\.)([a-z_]+)\.lora_[AB]\.weight$/.exec(engineName);
  return m ? m[1]! : null;
}

export const adapterConfigSchema = z
  .object({
    peft_type: z.literal('LORA'),
    task_type: z.string().nullable().optional(),
    r: z.number().int().positive(),
    lora_alpha: z.number().positive(),
    target_modules: z
      .union([z.array(z.string()), z.string()])
      .nullable()
      .optional(),
    base_model_name_or_path: z.string().nullable().optional(),
    use_rslora: z.boolean().optional(),
    use_dora: z.boolean().optional(),
    fan_in_fan_out: z.boolean().optional(),
    bias: z.string().optional(),
    rank_pattern: z.record(z.string(), z.unknown()).nullable().optional(),
    alpha_pattern: z.record(z.string(), z.unknown()).nullable().optional(),
    modules_to_save: z.array(z.string()).nullable().optional(),
    layers_to_transform: z.unknown().optional(),
    lora_bias: z.boolean().optional(),
    trainable_token_indices: z.unknown().optional(),
  })
  .passthrough();
export type AdapterConfig = z.infer<typeof adapterConfigSchema>;

export interface PeftExportOptions {
  /** adapter_config.json's base_model_name_or_path (a hub id, a path or a model resource name). */
  baseModelNameOrPath?: string;
  dtype?: WriteDtype;
}

function requireLora(model: TransformerModel): NonNullable<TransformerModel['lora']> {
  if (!model.lora)
    throw new CheckpointError(
      'incompatible',
      'this model has no LoRA adapter (create it with the lora option)',
    );
  return model.lora;
}

export function adapterConfigOf(
  model: TransformerModel,
  baseModelNameOrPath: string | null = null,
): AdapterConfig {
  const lora = requireLora(model);
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    r: lora.rank,
    lora_alpha: lora.alpha,
    target_modules: [...lora.targets].sort(),
    base_model_name_or_path: baseModelNameOrPath,
    lora_dropout: 0,
    bias: 'none',
    fan_in_fan_out: false,
    use_rslora: false,
    use_dora: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
    layers_to_transform: null,
    rank_pattern: {},
    alpha_pattern: {},
  };
}

/** adapter_config.json and adapter_model.safetensors for the model's adapter. */
export function peftAdapterFiles(
  model: TransformerModel,
  opts: PeftExportOptions = {},
): ExportFile[] {
  const config = adapterConfigOf(model, opts.baseModelNameOrPath ?? null);
  const engineNames = model
    .tensorInfo()
    .filter((t) => t.name.includes('.lora_'))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const specs = engineNames.map((t) => ({ name: toPeftName(t.name), shape: t.shape }));
  const text = `${JSON.stringify(config, null, 2)}\n`;
  return [
    { path: ADAPTER_CONFIG, body: () => text },
    {
      path: ADAPTER_WEIGHTS,
      body: () =>
        safetensorsReadable(specs, (name) => model.getTensor(name.slice(PEFT_PREFIX.length)), {
          dtype: opts.dtype ?? 'F32',
          metadata: { format: 'pt' },
        }).stream,
    },
  ];
}

/** Exports the adapter in PEFT layout (kind peft_lora). */
export async function exportPeftAdapter(
  model: TransformerModel,
  target: ExportTarget,
  opts: PeftExportOptions & ExportCommitOptions = {},
): Promise<ExportManifest> {
  return writeExport(target, peftAdapterFiles(model, opts), {
    kind: 'peft_lora',
    baseModel: opts.baseModel ?? opts.baseModelNameOrPath,
    ttlSeconds: opts.ttlSeconds,
  });
}

export interface PeftAdapter {
  config: AdapterConfig;
  rank: number;
  alpha: number;
  /** The linears the adapter's tensors adapt (from the tensors themselves). */
  targets: LoraTarget[];
  /** Engine names. */
  tensors: TensorMap;
  /** Tensors of the file that are not adapter weights (PEFT's saved base layers). */
  ignored: string[];
}

const KNOWN_TARGETS: ReadonlySet<string> = new Set(LORA_TARGETS);

function checkAgainstManifest(
  manifest: ExportManifest,
  path: string,
  bytes: Buffer,
  where: string,
): void {
  const entry = manifest.files.find((f) => f.path === path);
  if (!entry) return;
  const digest = createHash('sha256').update(bytes).digest('hex');
  if (bytes.length !== entry.size || digest !== entry.sha256)
    throw new CheckpointError(
      'corrupt',
      `${where}/${path} fails its checksum (${bytes.length} bytes, sha256 ${digest}; ${EXPORT_MANIFEST} says ${entry.size} bytes, sha256 ${entry.sha256})`,
      { file: path },
    );
}

/** Reads and validates a PEFT adapter directory (adapter_config.json + adapter_model.safetensors). */
export async function readPeftAdapter(source: ExportSource | string): Promise<PeftAdapter> {
  const src = asSource(source);
  const where = `${src.where}/${ADAPTER_CONFIG}`;
  let raw: unknown;
  try {
    raw = JSON.parse((await src.read(ADAPTER_CONFIG)).toString('utf8'));
  } catch (err) {
    if (err instanceof CheckpointError) throw err;
    throw new CheckpointError('corrupt', `${where} is not valid JSON`, {
      file: ADAPTER_CONFIG,
      cause: err,
    });
  }
  const parsed = adapterConfigSchema.safeParse(raw);
  if (!parsed.success)
    throw new CheckpointError(
      'incompatible',
      `${where}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')} (only LoRA adapters are supported)`,
      { file: ADAPTER_CONFIG },
    );
  const config = parsed.data;
  const unsupported = [
    config.use_rslora ? 'use_rslora' : null,
    config.use_dora ? 'use_dora' : null,
    config.fan_in_fan_out ? 'fan_in_fan_out' : null,
    config.bias && config.bias !== 'none' ? `bias "${config.bias}"` : null,
    Object.keys(config.rank_pattern ?? {}).length > 0 ? 'rank_pattern' : null,
    Object.keys(config.alpha_pattern ?? {}).length > 0 ? 'alpha_pattern' : null,
    (config.modules_to_save ?? []).length > 0 ? 'modules_to_save' : null,
    config.lora_bias === true ? 'lora_bias' : null,
    config.trainable_token_indices != null ? 'trainable_token_indices' : null,
  ].filter((x) => x !== null);
  if (unsupported.length > 0)
    throw new CheckpointError(
      'incompatible',
      `${where}: ${unsupported.join(', ')} not supported (plain LoRA with scale lora_alpha/r only)`,
      { file: ADAPTER_CONFIG },
    );
  if ((await src.size(ADAPTER_WEIGHTS)) === null)
    throw new CheckpointError(
      (await src.size('adapter_model.bin')) !== null ? 'incompatible' : 'not_found',
      `${src.where}: no ${ADAPTER_WEIGHTS} (pickled adapter_model.bin files are not read; convert to safetensors)`,
      { file: ADAPTER_WEIGHTS },
    );
  const wsource = `${src.where}/${ADAPTER_WEIGHTS}`;
  // A committed temper export lists sha256s: check them (adapters are small, read whole).
  const manifest = await readExportManifest(src);
  let peftTensors: TensorMap;
  try {
    if (manifest) {
      const bytes = await src.read(ADAPTER_WEIGHTS);
      checkAgainstManifest(manifest, ADAPTER_WEIGHTS, bytes, src.where);
      checkAgainstManifest(manifest, ADAPTER_CONFIG, await src.read(ADAPTER_CONFIG), src.where);
      peftTensors = parseSafetensors(bytes, wsource).tensors;
    } else {
      const reader = await openSafetensorsStream(await src.stream(ADAPTER_WEIGHTS), wsource);
      peftTensors = (await reader.readAll()).tensors;
    }
  } catch (err) {
    if (err instanceof SafetensorsError)
      throw new CheckpointError('corrupt', err.message, { file: ADAPTER_WEIGHTS, cause: err });
    throw err;
  }
  const tensors: TensorMap = new Map();
  const targets = new Set<string>();
  const ignored: string[] = [];
  for (const [name, t] of peftTensors) {
    // PEFT saves an adapted lm_head/embedding's base weights too (save_embedding_layers);
    // they are the base model's, which the base directory provides.
    if (name.endsWith('.base_layer.weight')) {
      ignored.push(name);
      continue;
    }
    const engineName = fromPeftName(name);
    const target = engineName ? targetOf(engineName) : null;
    if (!engineName || !target || !KNOWN_TARGETS.has(target))
      throw new CheckpointError(
        'incompatible',
        `${wsource}: tensor '${name}' is not a LoRA tensor of a supported linear (expected base_model.model.<module>.lora_A/B.weight)`,
        { file: ADAPTER_WEIGHTS },
      );
    tensors.set(engineName, t);
    targets.add(target);
  }
  if (Array.isArray(config.target_modules))
    for (const t of targets)
      if (!config.target_modules.includes(t))
        throw new CheckpointError(
          'incompatible',
          `${where}: tensors adapt '${t}', which target_modules does not list`,
          { file: ADAPTER_CONFIG },
        );
  return {
    config,
    rank: config.r,
    alpha: config.lora_alpha,
    targets: [...targets].sort() as LoraTarget[],
    tensors,
    ignored,
  };
}

/**
 * Loads a PEFT adapter into a LoRA model with the same rank, alpha and targets (weights
 * only: optimizer state and step are untouched). Nothing changes if anything is wrong.
 */
export async function loadAdapter(
  model: TransformerModel,
  source: ExportSource | string,
): Promise<PeftAdapter> {
  const adapter = await readPeftAdapter(source);
  applyAdapter(model, adapter, asSource(source).where);
  return adapter;
}

function applyAdapter(model: TransformerModel, adapter: PeftAdapter, where: string): void {
  const lora = requireLora(model);
  const mine = [...lora.targets].sort().join(',');
  if (
    adapter.rank !== lora.rank ||
    adapter.alpha !== lora.alpha ||
    adapter.targets.join(',') !== mine
  )
    throw new CheckpointError(
      'incompatible',
      `${where}: adapter has r=${adapter.rank}, lora_alpha=${adapter.alpha}, targets [${adapter.targets}]; the model has r=${lora.rank}, alpha=${lora.alpha}, targets [${mine}]`,
    );
  const missing = model
    .tensorInfo()
    .filter((t) => t.name.includes('.lora_') && !adapter.tensors.has(t.name))
    .map((t) => toPeftName(t.name));
  if (missing.length > 0)
    throw new CheckpointError(
      'incompatible',
      `${where}: adapter lacks ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ` and ${missing.length - 3} more` : ''}`,
    );
  try {
    model.loadTensors(adapter.tensors, { source: `${where}/${ADAPTER_WEIGHTS}`, partial: true });
  } catch (err) {
    throw new CheckpointError('incompatible', (err as Error).message, { cause: err });
  }
}

/** A LoRA model: the base model directory's weights plus the PEFT adapter's. */
export async function openAdapterModel(
  baseModelDir: string,
  adapterSource: ExportSource | string,
  opts: { threads?: number } = {},
): Promise<TransformerModel> {
  const adapter = await readPeftAdapter(adapterSource);
  if (adapter.targets.length === 0)
    throw new CheckpointError(
      'incompatible',
      `${asSource(adapterSource).where}: the adapter has no tensors`,
    );
  const model = await TransformerModel.fromDirectory(baseModelDir, {
    threads: opts.threads,
    lora: {
      rank: adapter.rank,
      alpha: adapter.alpha,
      targets: adapter.targets as [LoraTarget, ...LoraTarget[]],
    },
  });
  applyAdapter(model, adapter, asSource(adapterSource).where);
  return model;
}
