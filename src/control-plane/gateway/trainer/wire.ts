/**
 * The Tinker wire in JSON (snake_case), as the Fireworks training SDK and the plain `tinker`
 * client send it, and its translation to and from the trainer's gRPC messages — the one
 * place where the two vocabularies meet. Bodies are loose objects: fields a real client
 * adds and temper has no use for are ignored, while a field temper reads must be right or
 * the request is refused naming it.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import { z } from 'zod';
import { adamWFields } from '../../../recipes/index.js';
import {
  type AdamParamsSchema,
  CheckpointType,
  type DatumSchema,
  decodeBatched,
  encodeInt32,
  encodeTensor,
  type ForwardBackwardOutput,
  GradAccumulationNormalization,
  type LoraConfigSchema,
  type ModelInfo,
  type WireDtype,
} from '../../../trainer/index.js';
import { invalid } from '../../http/errors.js';

// ---- tensors and datums ----

const DTYPES = ['int64', 'int32', 'float32', 'float64', 'bfloat16'] as const;

const tensorData = z.looseObject({
  data: z.array(z.number()),
  dtype: z.enum(DTYPES),
  shape: z.array(z.number().int().nonnegative()).nullish(),
  sparse_crow_indices: z.array(z.number().int().nonnegative()).nullish(),
  sparse_col_indices: z.array(z.number().int().nonnegative()).nullish(),
});
type TensorData = z.output<typeof tensorData>;

const chunk = z.looseObject({
  type: z.string().default('encoded_text'),
  tokens: z.array(z.number().int()).optional(),
});

const datum = z.looseObject({
  model_input: z.looseObject({ chunks: z.array(chunk) }),
  loss_fn_inputs: z.record(z.string(), tensorData).default({}),
});

/**
 * Loss settings are numbers on the trainer. The SDK may also send flags (true = 1) and its
 * `target_logprob_support` switch, whose only value a trainer without sampling-side
 * support can honour is 'full_vocabulary' (what every temper loss computes).
 */
const lossFnConfig = z
  .record(z.string(), z.union([z.number(), z.boolean(), z.string()]))
  .nullish()
  .transform((config, ctx) => {
    const out: Record<string, number> = {};
    for (const [key, value] of Object.entries(config ?? {})) {
      if (typeof value === 'number') out[key] = value;
      else if (typeof value === 'boolean') out[key] = value ? 1 : 0;
      else if (key !== 'target_logprob_support' || value !== 'full_vocabulary')
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: `'${value}' is not supported (loss settings are numbers; target_logprob_support takes 'full_vocabulary')`,
        });
    }
    return out;
  });

const forwardInput = z.looseObject({
  data: z.array(datum).min(1, 'give at least one datum'),
  loss_fn: z.string().min(1),
  loss_fn_config: lossFnConfig,
});

const modelOp = {
  model_id: z.string().min(1),
  seq_id: z.number().int().positive(),
};

/** A sparse CSR tensor, written out dense: [rows, cols] from `shape`. */
function densify(t: TensorData, what: string): number[] {
  const crow = t.sparse_crow_indices;
  const col = t.sparse_col_indices;
  if (!crow && !col) return t.data;
  const shape = t.shape ?? [];
  if (!crow || !col || shape.length !== 2)
    throw invalid(
      `${what}: a sparse tensor needs sparse_crow_indices, sparse_col_indices and a 2-D shape`,
    );
  const [rows, cols] = shape as [number, number];
  if (crow.length !== rows + 1 || col.length !== t.data.length)
    throw invalid(`${what}: sparse indices do not match shape [${rows}, ${cols}]`);
  const dense = new Array<number>(rows * cols).fill(0);
  for (let r = 0; r < rows; r++)
    for (let k = crow[r]!; k < crow[r + 1]!; k++) {
      const c = col[k]!;
      if (c >= cols)
        throw invalid(`${what}: sparse column ${c} is outside shape [${rows}, ${cols}]`);
      dense[r * cols + c] = t.data[k]!;
    }
  return dense;
}

function toProtoDatum(d: z.output<typeof datum>, i: number): MessageInitShape<typeof DatumSchema> {
  const modelInput = d.model_input.chunks.map((c, j) => {
    if (c.type !== 'encoded_text' || !c.tokens)
      throw invalid(
        `data[${i}].model_input.chunks[${j}]: only encoded_text chunks with tokens are supported (got '${c.type}')`,
      );
    return { chunk: { case: 'encodedText' as const, value: { tokens: encodeInt32(c.tokens) } } };
  });
  const lossFnInputs: Record<string, ReturnType<typeof encodeTensor>> = {};
  for (const [key, t] of Object.entries(d.loss_fn_inputs)) {
    const what = `data[${i}].loss_fn_inputs.${key}`;
    const values = densify(t, what);
    const shape = t.shape ?? [values.length];
    if (shape.reduce((a, b) => a * b, 1) !== values.length)
      throw invalid(`${what}: shape [${shape.join(', ')}] does not hold ${values.length} values`);
    lossFnInputs[key] = encodeTensor(values, t.dtype as WireDtype, shape);
  }
  return { modelInput, lossFnInputs };
}

function withUnitWeights(d: z.output<typeof datum>): z.output<typeof datum> {
  const targets = d.loss_fn_inputs.target_tokens;
  if (d.loss_fn_inputs.weights || !targets) return d;
  const shape = targets.shape ?? [targets.data.length];
  if (shape.length !== 1) return d;
  const n = shape[0]!;
  return {
    ...d,
    loss_fn_inputs: {
      ...d.loss_fn_inputs,
      weights: { data: new Array<number>(n).fill(1), dtype: 'float32', shape },
    },
  };
}

/** Per-datum outputs and metrics as the client reads them. */
export function fromProtoOutput(out: ForwardBackwardOutput | undefined) {
  const n = Number(out?.numDatums ?? 0);
  const records: Record<string, unknown>[] = Array.from({ length: n }, () => ({}));
  for (const [key, batched] of Object.entries(out?.lossFnOutputs ?? {})) {
    const { parts, dtype, trailingShape } = decodeBatched(batched, key);
    const row = trailingShape.reduce((a, b) => a * b, 1) || 1;
    parts.forEach((part, i) => {
      records[i] ??= {};
      records[i]![key] = {
        data: Array.from(part),
        dtype: dtype === 'int64' || dtype === 'int32' ? 'int64' : 'float32',
        shape: [part.length / row, ...trailingShape],
      };
    });
  }
  return {
    loss_fn_output_type: 'ArrayRecord',
    loss_fn_outputs: records,
    metrics: { ...(out?.metrics ?? {}) },
  };
}

// ---- op bodies ----

export const createSessionBody = z.looseObject({
  tags: z.array(z.string()).nullish(),
  user_metadata: z.record(z.string(), z.unknown()).nullish(),
  sdk_version: z.string().nullish(),
});

export const sessionBody = z.looseObject({ session_id: z.string().min(1) });

export const createModelBody = z.looseObject({
  session_id: z.string().min(1),
  model_seq_id: z.number().int().nonnegative().default(0),
  base_model: z.string().nullish(),
  lora_config: z
    .looseObject({
      rank: z.number().int().min(0).max(256),
      alpha: z.number().nonnegative().nullish(),
      seed: z.number().int().nullish(),
      train_mlp: z.boolean().nullish(),
      train_attn: z.boolean().nullish(),
      train_unembed: z.boolean().nullish(),
    })
    .nullish(),
  user_metadata: z.record(z.string(), z.unknown()).nullish(),
  base_only: z.boolean().nullish(),
});

export function loraConfig(
  c: z.output<typeof createModelBody>['lora_config'],
): MessageInitShape<typeof LoraConfigSchema> | undefined {
  if (!c) return undefined;
  return {
    rank: c.rank,
    ...(c.alpha ? { alpha: c.alpha } : {}),
    ...(c.seed !== null && c.seed !== undefined ? { seed: BigInt(c.seed) } : {}),
    ...(c.train_unembed !== null && c.train_unembed !== undefined
      ? { trainUnembed: c.train_unembed }
      : {}),
    ...(c.train_mlp !== null && c.train_mlp !== undefined ? { trainMlp: c.train_mlp } : {}),
    ...(c.train_attn !== null && c.train_attn !== undefined ? { trainAttn: c.train_attn } : {}),
  };
}

/** String user metadata (the trainer keeps strings; anything else is written as JSON). */
export function stringMap(m: Record<string, unknown> | null | undefined): Record<string, string> {
  return Object.fromEntries(
    Object.entries(m ?? {}).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]),
  );
}

export const forwardBody = z.looseObject({ ...modelOp, forward_input: forwardInput });
export const forwardBackwardBody = z.looseObject({
  ...modelOp,
  forward_backward_input: forwardInput,
});

/** gRPC request fields of a forward / forward_backward. */
export function toForwardRequest(
  body: { model_id: string; seq_id: number },
  input: z.output<typeof forwardInput>,
) {
  // On the Tinker wire cross_entropy's `weights` are optional (every target counts once);
  // temper's built-in loss reads them, so a datum without them gets ones.
  const data = input.loss_fn === 'cross_entropy' ? input.data.map(withUnitWeights) : input.data;
  return {
    modelId: body.model_id,
    seqId: body.seq_id,
    data: data.map(toProtoDatum),
    lossFn: input.loss_fn,
    lossFnConfig: input.loss_fn_config,
  };
}

const NORMALIZATION = {
  num_loss_tokens: GradAccumulationNormalization.NUM_LOSS_TOKENS,
  num_sequences: GradAccumulationNormalization.NUM_SEQUENCES,
  none: GradAccumulationNormalization.NONE,
} as const;

export const optimStepBody = z.looseObject({
  ...modelOp,
  adam_params: z.looseObject({
    learning_rate: z.number().positive(),
    beta1: adamWFields.beta1.nullish(),
    beta2: adamWFields.beta2.nullish(),
    eps: adamWFields.eps.nullish(),
    weight_decay: adamWFields.weightDecay.nullish(),
    grad_clip_norm: adamWFields.gradClipNorm.nullish(),
    emit_grad_norm_metrics: z.boolean().nullish(),
  }),
  grad_accumulation_normalization: z.enum(['num_loss_tokens', 'num_sequences', 'none']).nullish(),
});

export function toOptimStepRequest(b: z.output<typeof optimStepBody>) {
  const a = b.adam_params;
  const adamParams: MessageInitShape<typeof AdamParamsSchema> = {
    learningRate: a.learning_rate,
    ...(a.beta1 != null ? { beta1: a.beta1 } : {}),
    ...(a.beta2 != null ? { beta2: a.beta2 } : {}),
    ...(a.eps != null ? { eps: a.eps } : {}),
    ...(a.weight_decay != null ? { weightDecay: a.weight_decay } : {}),
    ...(a.grad_clip_norm != null ? { gradClipNorm: a.grad_clip_norm } : {}),
  };
  return {
    modelId: b.model_id,
    seqId: b.seq_id,
    adamParams,
    gradAccumulationNormalization: NORMALIZATION[b.grad_accumulation_normalization ?? 'none'],
  };
}

/** A checkpoint name as the trainer stores it: a DNS label. */
const checkpointName = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
    'must be 1-63 characters of a-z, 0-9 and -, starting and ending with a letter or digit',
  );

export const saveWeightsBody = z.looseObject({
  ...modelOp,
  path: checkpointName,
  overwrite: z.boolean().nullish(),
  ttl_seconds: z.number().int().nonnegative().nullish(),
});

export const loadWeightsBody = z.looseObject({
  ...modelOp,
  path: z.string().min(1),
  optimizer: z.boolean().default(false),
});

const CROSS_JOB = /^cross_job:\/\/([a-z0-9-]+)\/([^/]+)$/;
const TINKER_RUN = /^([a-z0-9-]+)\/run-[0-9a-f]{32}\/([^/]+)$/;

/**
 * The checkpoint a load_weights `path` names, as the trainer takes it: a bare name (this
 * trainer's), `cross_job://<job>/<name>` (another trainer job of the same account) or
 * `<account>/run-<hex>/<name>`.
 */
export function checkpointRef(account: string, path: string): string {
  const cross = CROSS_JOB.exec(path);
  if (cross) return `accounts/${account}/rlorTrainerJobs/${cross[1]}/checkpoints/${cross[2]}`;
  const run = TINKER_RUN.exec(path);
  if (run) {
    if (run[1] !== account)
      throw invalid(`path: ${path} belongs to account ${run[1]}, not ${account}`);
    return run[2]!;
  }
  if (checkpointName.safeParse(path).success) return path;
  throw invalid(
    `path: '${path}' is not a checkpoint name, cross_job://<job>/<name> or <account>/run-<id>/<name>`,
  );
}

const SAMPLER_TYPES = {
  base: CheckpointType.BASE,
  merged_base: CheckpointType.BASE,
  delta: CheckpointType.DELTA,
} as const;

export const saveForSamplerBody = z.looseObject({
  ...modelOp,
  path: checkpointName,
  checkpoint_type: z.enum(['base', 'delta', 'merged_base']).nullish(),
  ttl_seconds: z.number().int().nonnegative().nullish(),
});

export const samplerCheckpointType = (t: keyof typeof SAMPLER_TYPES | null | undefined) =>
  t ? SAMPLER_TYPES[t] : CheckpointType.UNSPECIFIED;

export const getInfoBody = z.looseObject({ model_id: z.string().min(1) });

export const unloadModelBody = z.looseObject({ model_id: z.string().min(1) });

export const loadAdapterBody = z.looseObject({
  ...modelOp,
  adapter_path: z.string().min(1),
});

export const retrieveFutureBody = z.looseObject({
  request_id: z.string().min(1),
  allow_metadata_only: z.boolean().nullish(),
});

export const telemetryBody = z.looseObject({ events: z.array(z.unknown()).nullish() });

export function infoJson(info: ModelInfo | undefined, modelId: string) {
  return {
    model_id: info?.modelId || modelId,
    model_data: {
      arch: 'llama',
      model_name: info?.baseModel ?? '',
      tokenizer_id: info?.baseModel ?? '',
    },
    is_lora: info?.isLora ?? false,
    lora_rank: info?.loraRank ?? 0,
  };
}
