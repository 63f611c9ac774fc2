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
import {
  DcpCheckpoints,
  type DcpShardResult,
  type SaveTensor,
  type WholeTensor,
} from './checkpoints.js';
import type { ChecksumAlgorithm } from './checksum.js';
import { CheckpointError } from './errors.js';
import type { DcpMetadata, JsonValue } from './metadata.js';
import { type FlatRange, intersectRanges, partitionRange } from './partition.js';

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
  /** With loadTrainState's momentShard: this rank's part of the moments. */
  shard?: MomentShard;
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
    tensors.set(key, 'read' in t ? { shape: t.shape, data: t.read().slice() } : t);
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
): Map<string, WholeTensor> {
  const tensors = new Map<string, WholeTensor>();
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
  return asCheckpoints(target).save(name, {
    ...trainStateInput(model, extra),
    tensors: extra.snapshot ? captureTrainState(model, extra) : trainStateTensors(model, extra),
  });
}

/** What a save of the model's train state commits, apart from the tensors' values. */
function trainStateInput(model: TransformerModel, extra: TrainStateExtra) {
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
  return {
    step: model.step,
    state,
    checkpointType: model.lora ? 'TRAINING_LORA' : 'TRAINING',
    worldSize: extra.worldSize,
    ttlSeconds: extra.ttlSeconds,
    checksum: extra.checksum,
  };
}

/**
 * A ZeRO-1 rank's part of the optimizer state: values [begin, begin + length) of the flat
 * vector the trainable tensors make in engine order (trainableNames); m and v hold at least
 * `length` values (a last shard may be padded).
 */
export interface MomentShard {
  begin: number;
  length: number;
  m: Float32Array;
  v: Float32Array;
}

/**
 * Where each trainable tensor of the model starts in the flat vector a moment shard indexes,
 * and the part [begin, begin + length) of it that lies in each tensor (null: none).
 */
function shardRanges(
  model: TransformerModel,
  shard: { begin: number; length: number },
): Map<string, { at: number; range: FlatRange | null }> {
  const out = new Map<string, { at: number; range: FlatRange | null }>();
  let at = 0;
  for (const name of model.trainableNames()) {
    const n = model.tensorView(name, 'grad')?.length ?? 0;
    out.set(name, {
      at,
      range: intersectRanges(
        { start: 0, end: n },
        { start: shard.begin - at, end: shard.begin + shard.length - at },
      ),
    });
    at += n;
  }
  return out;
}

/** The tensor name a train-state key is about, and whether it is a moment. */
function keyTensor(key: string): { name: string; moment: boolean } | null {
  if (key.startsWith(WEIGHTS)) return { name: key.slice(WEIGHTS.length), moment: false };
  if (key.startsWith(OPTIM) && key.endsWith(EXP_AVG_SQ))
    return { name: key.slice(OPTIM.length, -EXP_AVG_SQ.length), moment: true };
  if (key.startsWith(OPTIM) && key.endsWith(EXP_AVG))
    return { name: key.slice(OPTIM.length, -EXP_AVG.length), moment: true };
  return null;
}

/**
 * One data-parallel rank's file of a sharded save (DCP style: each rank writes its own): the
 * weights and moments of its optimizer shard's flat range — the moments from the shard, the
 * weights (the same on every rank) from the engine — and its part of any tensor outside the
 * flat vector. Every rank of the save passes the same `attempt`; one then commits them all
 * with commitTrainState. The files together tile every tensor whatever the world size, so a
 * load at any world size finds each range it asks for.
 */
export async function writeTrainStateShard(
  model: TransformerModel,
  target: DcpCheckpoints | ObjectStore,
  name: string,
  opts: { attempt: string; rank: number; worldSize: number; shard: MomentShard },
  extra: Pick<TrainStateExtra, 'includeFrozen' | 'checksum'> = {},
) {
  const { rank, worldSize, shard } = opts;
  const flat = shardRanges(model, shard);
  const tensors = new Map<string, SaveTensor>();
  for (const [key, t] of trainStateTensors(model, extra)) {
    const k = keyTensor(key);
    const f = k && flat.get(k.name);
    if (k?.moment && f) {
      const values = key.endsWith(EXP_AVG_SQ) ? shard.v : shard.m;
      const off = f.at - shard.begin;
      tensors.set(key, {
        shape: t.shape,
        readRange: (r) => values.subarray(off + r.start, off + r.end),
      });
    } else tensors.set(key, t);
  }
  return asCheckpoints(target).writeShard(
    name,
    opts.attempt,
    rank,
    worldSize,
    tensors,
    extra.checksum,
    (key, n) => {
      const k = keyTensor(key);
      const f = k && flat.get(k.name);
      return f ? f.range : partitionRange(n, rank, worldSize);
    },
  );
}

/** Commits the files every rank of a sharded save wrote (writeTrainStateShard). */
export function commitTrainState(
  model: TransformerModel,
  target: DcpCheckpoints | ObjectStore,
  name: string,
  shards: DcpShardResult[],
  extra: TrainStateExtra = {},
): Promise<DcpMetadata> {
  const tensors = new Map<string, SaveTensor>();
  for (const [key, t] of trainStateTensors(model, extra))
    tensors.set(key, { shape: t.shape, data: new Float32Array(0) });
  return asCheckpoints(target).commit(name, { ...trainStateInput(model, extra), tensors }, shards);
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
  opts: {
    /**
     * A ZeRO-1 rank: only this part of the moments is read (from whichever files hold it,
     * whatever world size saved them) and returned as `shard`; the engine's moments are
     * released instead of set.
     */
    momentShard?: { begin: number; length: number; padded: number };
  } = {},
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

  const want = opts.momentShard;
  const flat = want ? shardRanges(model, want) : undefined;
  const { tensors } = await checkpoints.load(
    name,
    flat
      ? {
          ranges: (key, n) => {
            const k = keyTensor(key);
            const f = k?.moment ? flat.get(k.name) : undefined;
            return f ? f.range : { start: 0, end: n };
          },
        }
      : {},
  );
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
    if (!w || !meta.tensors[expAvgKey(t.name)] || !meta.tensors[expAvgSqKey(t.name)])
      throw new CheckpointError(
        'incompatible',
        `${where} lacks ${!w ? 'weights' : 'optimizer state'} for trainable tensor '${t.name}'`,
      );
    const m = tensorOf(expAvgKey(t.name));
    const v = tensorOf(expAvgSqKey(t.name));
    if (m && v) moments.set(t.name, { m: m.data, v: v.data });
  }
  let shard: MomentShard | undefined;
  if (want && flat) {
    shard = {
      begin: want.begin,
      length: want.length,
      m: new Float32Array(want.padded),
      v: new Float32Array(want.padded),
    };
    for (const [n, st] of moments) {
      const f = flat.get(n)!;
      const off = f.at + f.range!.start - want.begin;
      shard.m.set(st.m, off);
      shard.v.set(st.v, off);
    }
  }
  model.loadTensors(weights, { source: where, partial: true });
  if (shard) model.releaseOptimizerState();
  else for (const [n, st] of moments) model.setOptimizerState(n, st.m, st.v);
  model.step = meta.step;
  return {
    ...(shard ? { shard } : {}),
    step: meta.step,
    dataCursor: rec.dataCursor,
    rng: rec.rng,
    hyperparameters: rec.hyperparameters,
    baseModel: rec.baseModel,
    user: rec.user,
    metadata: meta,
  };
}
