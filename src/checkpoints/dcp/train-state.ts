// Train state of a TransformerModel as a DCP checkpoint: weights, AdamW moments, step, data
// cursor, RNG state and hyperparameters. Resuming from it reproduces the uninterrupted run.
//
// Tensor keys: `weights/{name}`, `optim/{name}/exp_avg` (m), `optim/{name}/exp_avg_sq` (v)
// (a parameter's two moments sort next to each other). Full-parameter models save every
// tensor; LoRA models save the adapter (and its moments) only, unless `includeFrozen` adds
// the base weights. By default tensors are read from the engine as the writer reaches them
// (no up-front copy of the whole state); the model must not change until the save resolves
// (the trainer's op queue guarantees that), or pass `snapshot: true`.
import { z } from 'zod';
import { configDifference, type ModelConfig, tensorDataToF32 } from '../../engine/index.js';
import type { TransformerModel } from '../../engine/model.js';
import type { ObjectStore } from '../object-store/types.js';
import type { Tensor, TensorMap } from '../safetensors.js';
import { DcpCheckpoints, type SaveTensor } from './checkpoints.js';
import type { ChecksumAlgorithm } from './checksum.js';
import { CheckpointError } from './errors.js';
import type { DcpMetadata, JsonValue } from './metadata.js';

export const WEIGHTS = 'weights/';
export const OPTIM = 'optim/';
export const EXP_AVG = '/exp_avg';
export const EXP_AVG_SQ = '/exp_avg_sq';

export const weightKey = (name: string) => `${WEIGHTS}${name}`;
export const expAvgKey = (name: string) => `${OPTIM}${name}${EXP_AVG}`;
export const expAvgSqKey = (name: string) => `${OPTIM}${name}${EXP_AVG_SQ}`;

export interface TrainStateExtra {
  /** Where the data loader is (opaque JSON, e.g. {epoch, offset}). */
  dataCursor?: JsonValue;
  /** RNG state of the caller's samplers/shufflers (opaque JSON). */
  rng?: JsonValue;
  /** Learning rate, betas, schedule, ... as the caller wants them back. */
  hyperparameters?: Record<string, JsonValue>;
  /** The base model this run fine-tunes (e.g. accounts/temper/models/byte-lm-3m). */
  baseModel?: string;
  /** Number of shard files (data-parallel ranks) to write; default 1. */
  worldSize?: number;
  ttlSeconds?: number;
  /** LoRA: also store the frozen base weights (default false). */
  includeFrozen?: boolean;
  /** File checksum: crc32 (default) or sha256. */
  checksum?: ChecksumAlgorithm;
  /** Copy the whole state before writing (default false: read each tensor when it is written). */
  snapshot?: boolean;
  /** Anything else the caller wants back (opaque JSON). */
  user?: JsonValue;
}

const loraSchema = z.object({
  rank: z.number(),
  alpha: z.number(),
  targets: z.array(z.string()),
  seed: z.number().optional(),
});

const trainStateSchema = z.object({
  kind: z.enum(['full', 'lora']),
  model: z.object({
    config: z.record(z.string(), z.json()),
    lora: loraSchema.nullable(),
  }),
  trainable: z.array(z.string()),
  baseModel: z.string().nullable(),
  dataCursor: z.json(),
  rng: z.json(),
  hyperparameters: z.record(z.string(), z.json()),
  user: z.json(),
});
export type TrainStateRecord = z.infer<typeof trainStateSchema>;

export interface LoadedTrainState {
  step: number;
  dataCursor: JsonValue;
  rng: JsonValue;
  hyperparameters: Record<string, JsonValue>;
  baseModel: string | null;
  user: JsonValue;
  metadata: DcpMetadata;
}

function asCheckpoints(target: DcpCheckpoints | ObjectStore): DcpCheckpoints {
  return target instanceof DcpCheckpoints ? target : new DcpCheckpoints(target);
}

function loraRecord(model: TransformerModel): TrainStateRecord['model']['lora'] {
  if (!model.lora) return null;
  return {
    rank: model.lora.rank,
    alpha: model.lora.alpha,
    targets: [...model.lora.targets].sort(),
  };
}

/** Copies the model's train state out (a consistent snapshot, taken before any I/O). */
export function captureTrainState(
  model: TransformerModel,
  opts: { includeFrozen?: boolean } = {},
): TensorMap {
  const tensors: TensorMap = new Map();
  for (const [key, t] of trainStateTensors(model, opts))
    tensors.set(key, 'data' in t ? t : { shape: t.shape, data: t.read().slice() });
  return tensors;
}

/**
 * The model's train state as tensors read from the engine when the writer reaches them:
 * zero-copy views of the engine's memory (TransformerModel.tensorView), so the model must not
 * step until the save completes (captureTrainState copies instead).
 */
export function trainStateTensors(
  model: TransformerModel,
  opts: { includeFrozen?: boolean } = {},
): Map<string, SaveTensor> {
  const tensors = new Map<string, SaveTensor>();
  const view = (name: string, kind: 'value' | 'm' | 'v'): Float32Array => {
    // A frozen base stored in bf16 (saved with includeFrozen) is widened: DCP holds float32.
    if (kind === 'value') return tensorDataToF32(model.tensorView(name));
    const data = model.tensorView(name, kind);
    if (!data)
      throw new CheckpointError(
        'incompatible',
        `tensor '${name}' is trainable but has no optimizer state`,
      );
    return data;
  };
  for (const info of model.tensorInfo()) {
    if (!info.trainable && model.lora && !opts.includeFrozen) continue;
    const name = info.name;
    tensors.set(weightKey(name), { shape: info.shape, read: () => view(name, 'value') });
    if (!info.trainable) continue;
    tensors.set(expAvgKey(name), { shape: info.shape, read: () => view(name, 'm') });
    tensors.set(expAvgSqKey(name), { shape: info.shape, read: () => view(name, 'v') });
  }
  return tensors;
}

/** Saves the model's train state as checkpoint `name` (TRAINING, or TRAINING_LORA for adapters). */
export async function saveTrainState(
  model: TransformerModel,
  target: DcpCheckpoints | ObjectStore,
  name: string,
  extra: TrainStateExtra = {},
): Promise<DcpMetadata> {
  const checkpoints = asCheckpoints(target);
  const state: TrainStateRecord = {
    kind: model.lora ? 'lora' : 'full',
    model: { config: { ...model.config }, lora: loraRecord(model) },
    trainable: model.trainableNames(),
    baseModel: extra.baseModel ?? null,
    dataCursor: extra.dataCursor ?? null,
    rng: extra.rng ?? null,
    hyperparameters: extra.hyperparameters ?? {},
    user: extra.user ?? null,
  };
  return checkpoints.save(name, {
    tensors: extra.snapshot ? captureTrainState(model, extra) : trainStateTensors(model, extra),
    step: model.step,
    state,
    checkpointType: model.lora ? 'TRAINING_LORA' : 'TRAINING',
    worldSize: extra.worldSize,
    ttlSeconds: extra.ttlSeconds,
    checksum: extra.checksum,
  });
}

function sameConfig(a: ModelConfig, b: Record<string, unknown>): string | null {
  // Fields a checkpoint from before they existed lacks are read as off (configDifference).
  return configDifference(b as unknown as ModelConfig, a, ['the checkpoint', 'the model']);
}

/**
 * Loads checkpoint `name` into `model`: weights, AdamW moments and step. The checkpoint must
 * have been saved from a model of the same configuration and adapter; every file is checked
 * against its checksum and every tensor against the model before anything is written.
 */
export async function loadTrainState(
  model: TransformerModel,
  target: DcpCheckpoints | ObjectStore,
  name: string,
): Promise<LoadedTrainState> {
  const checkpoints = asCheckpoints(target);
  const meta = await checkpoints.metadata(name);
  const parsed = trainStateSchema.safeParse(meta.state);
  if (!parsed.success)
    throw new CheckpointError(
      'incompatible',
      `checkpoint '${name}' is not a train-state checkpoint (its state has no model record)`,
    );
  const rec = parsed.data;
  const where = `checkpoint '${name}'`;
  const configDiff = sameConfig(model.config, rec.model.config);
  if (configDiff)
    throw new CheckpointError(
      'incompatible',
      `${where} was saved from a different model: ${configDiff}`,
    );
  const lora = loraRecord(model);
  const saved = rec.model.lora;
  const sameLora =
    lora === null
      ? saved === null
      : saved !== null &&
        saved.rank === lora.rank &&
        saved.alpha === lora.alpha &&
        [...saved.targets].sort().join(',') === lora.targets.join(',');
  if (!sameLora)
    throw new CheckpointError(
      'incompatible',
      `${where} has adapter ${JSON.stringify(rec.model.lora)}, the model has ${JSON.stringify(lora)}`,
    );

  const { tensors } = await checkpoints.load(name);
  const info = new Map(model.tensorInfo().map((t) => [t.name, t]));
  const weights: TensorMap = new Map();
  const moments = new Map<string, { m: Float32Array; v: Float32Array }>();
  const tensorOf = (key: string): Tensor | null => {
    const s = tensors.get(key);
    return s ? { shape: s.shape, data: s.data } : null;
  };
  for (const key of tensors.keys()) {
    const n = key.startsWith(WEIGHTS)
      ? key.slice(WEIGHTS.length)
      : key.startsWith(OPTIM) && key.endsWith(EXP_AVG)
        ? key.slice(OPTIM.length, -EXP_AVG.length)
        : key.startsWith(OPTIM) && key.endsWith(EXP_AVG_SQ)
          ? key.slice(OPTIM.length, -EXP_AVG_SQ.length)
          : null;
    const t = n === null ? undefined : info.get(n);
    if (!t)
      throw new CheckpointError(
        'incompatible',
        `${where} holds tensor '${key}', which this model does not have`,
      );
    const shape = tensors.get(key)!.shape;
    if (shape.length !== t.shape.length || shape.some((d, i) => d !== t.shape[i]))
      throw new CheckpointError(
        'incompatible',
        `${where}: tensor '${key}' has shape [${shape}], the model's is [${t.shape}]`,
      );
  }
  for (const t of info.values()) {
    const w = tensorOf(weightKey(t.name));
    if (w) weights.set(t.name, w);
    if (!t.trainable) continue;
    const m = tensorOf(expAvgKey(t.name));
    const v = tensorOf(expAvgSqKey(t.name));
    if (!w || !m || !v)
      throw new CheckpointError(
        'incompatible',
        `${where} lacks ${!w ? 'weights' : 'optimizer state'} for trainable tensor '${t.name}'`,
      );
    moments.set(t.name, { m: m.data, v: v.data });
  }
  model.loadTensors(weights, { source: where, partial: true });
  for (const [n, st] of moments) model.setOptimizerState(n, st.m, st.v);
  model.step = meta.step;
  return {
    step: meta.step,
    dataCursor: rec.dataCursor,
    rng: rec.rng,
    hyperparameters: rec.hyperparameters,
    baseModel: rec.baseModel,
    user: rec.user,
    metadata: meta,
  };
}
