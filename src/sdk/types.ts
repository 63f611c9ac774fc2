/**
 * What a Training API user hands the SDK and gets back. Datums follow the Training API
 * (`{modelInput, lossFnInputs}` with typed tensors); the engine-style `Datum`
 * (`{tokens, targets, weights}`, see datums.ts) is accepted too.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import type {
  DatumSchema,
  ForwardBackwardOutput as WireOutput,
} from '../gen/temper/trainer/v1/trainer_pb.js';
import { FIELDS, type LossDatum, type NumericArray, type TensorInput } from '../losses/index.js';
import type { AdamWParams } from '../recipes/optimizer.js';
import { TrainerError } from '../trainer/errors.js';
import { decodeBatched, encodeInt32, encodeTensor, type WireDtype } from '../trainer/wire.js';
import type { Datum } from './datums.js';

export interface EncodedTextChunk {
  type: 'encoded_text';
  tokens: readonly number[] | Int32Array;
}

/** A model input: chunks of tokens (images later). */
export interface ModelInput {
  chunks: EncodedTextChunk[];
}

export const ModelInput = {
  fromInts(tokens: readonly number[] | Int32Array): ModelInput {
    return { chunks: [{ type: 'encoded_text', tokens }] };
  },
  toInts(input: ModelInput | readonly number[] | Int32Array): number[] {
    if (Array.isArray(input) || input instanceof Int32Array) return Array.from(input);
    return (input as ModelInput).chunks.flatMap((c) => Array.from(c.tokens));
  },
  length(input: ModelInput | readonly number[] | Int32Array): number {
    if (Array.isArray(input) || input instanceof Int32Array) return input.length;
    return (input as ModelInput).chunks.reduce((n, c) => n + c.tokens.length, 0);
  },
};

/**
 * A Training API datum. With `lossFnInputs.target_tokens` ([N] or [N, K]) the logprob at
 * position j is that of target j; without it the targets are the next tokens (N - 1 logprobs,
 * custom losses only). The other inputs (weights, advantages, ...) are in target coordinates.
 */
export interface TrainingDatum {
  modelInput: ModelInput | readonly number[] | Int32Array;
  lossFnInputs: Readonly<Record<string, TensorInput>>;
}

export type DatumInput = TrainingDatum | Datum;

function isEngineDatum(d: DatumInput): d is Datum {
  return 'tokens' in d && 'targets' in d && !('modelInput' in d);
}

/** The datum as a Training API datum. */
export function toTrainingDatum(d: DatumInput): TrainingDatum {
  if (!isEngineDatum(d)) return d;
  return {
    modelInput: d.tokens,
    lossFnInputs: { [FIELDS.targetTokens]: d.targets, [FIELDS.weights]: d.weights },
  };
}

/** The datum as src/losses reads it (for custom losses run locally). */
export function toLossDatum(d: DatumInput): LossDatum {
  const t = toTrainingDatum(d);
  return { model_input: ModelInput.toInts(t.modelInput), loss_fn_inputs: t.lossFnInputs };
}

function tensorParts(
  field: string,
  input: TensorInput,
): { data: NumericArray; shape: readonly number[]; dtype: WireDtype } {
  const isView = Array.isArray(input) || ArrayBuffer.isView(input);
  const data = (isView ? input : (input as { data: NumericArray }).data) as NumericArray;
  const shape = isView
    ? [data.length]
    : ((input as { shape?: readonly number[] }).shape ?? [data.length]);
  const given = isView ? undefined : (input as { dtype?: WireDtype }).dtype;
  let dtype: WireDtype;
  if (given) dtype = given;
  else if (data instanceof Float32Array) dtype = 'float32';
  else if (data instanceof Float64Array) dtype = 'float64';
  else if (
    data instanceof Int32Array ||
    data instanceof Uint8Array ||
    data instanceof Int16Array ||
    data instanceof Uint16Array
  )
    dtype = 'int32';
  else if (field === FIELDS.targetTokens) dtype = 'int64';
  else dtype = 'float32';
  return { data, shape, dtype };
}

/**
 * The wire datum. `fields` limits the loss inputs sent (the custom path's forward pass only
 * needs target_tokens).
 */
export function toWireDatum(
  d: DatumInput,
  fields?: readonly string[],
): MessageInitShape<typeof DatumSchema> {
  const t = toTrainingDatum(d);
  const inputs: Record<string, ReturnType<typeof encodeTensor>> = {};
  for (const [name, input] of Object.entries(t.lossFnInputs)) {
    if (input === undefined || (fields && !fields.includes(name))) continue;
    const { data, shape, dtype } = tensorParts(name, input);
    inputs[name] = encodeTensor(data, dtype, shape);
  }
  const chunks =
    Array.isArray(t.modelInput) || t.modelInput instanceof Int32Array
      ? [t.modelInput as readonly number[] | Int32Array]
      : (t.modelInput as ModelInput).chunks.map((c) => {
          if (c.type !== 'encoded_text') {
            throw new TrainerError(
              'invalid_datum',
              `model input chunk type '${String(c.type)}' is not supported`,
            );
          }
          return c.tokens;
        });
  return {
    modelInput: chunks.map((tokens) => ({
      chunk: { case: 'encodedText' as const, value: { tokens: encodeInt32(tokens) } },
    })),
    lossFnInputs: inputs,
  };
}

/** One datum's output tensor. */
export interface OutputTensor {
  data: Float32Array;
  shape: number[];
  dtype: 'float32';
}

export interface ForwardBackwardResult {
  /** Per datum: `logprobs` shaped like its targets ([N] or [N, K]). */
  lossFnOutputs: { logprobs: OutputTensor }[];
  /** Keyed `name:reduction` (`loss:sum`). */
  metrics: Record<string, number>;
  lossFnOutputType: string;
}

export interface CustomForwardBackwardResult extends ForwardBackwardResult {
  /** The custom loss's value. */
  loss: number;
  /** Tokens and sequences with a non-zero gradient. */
  numLossTokens: number;
  numSequences: number;
}

/** forwardBackwardCustom with `output: 'embedding'`: per-datum pooled embeddings. */
export interface CustomEmbeddingResult extends Omit<CustomForwardBackwardResult, 'lossFnOutputs'> {
  /** Per datum: its pooled final hidden state, shape [hiddenSize]. */
  lossFnOutputs: { embedding: OutputTensor }[];
}

/** Per-datum embeddings from a forward_backward_custom answer with output EMBEDDING. */
export function decodeEmbeddingOutput(
  output: WireOutput | undefined,
  what: string,
): { lossFnOutputs: { embedding: OutputTensor }[] } {
  if (!output) throw new TrainerError('internal', `${what}: the trainer sent no output`);
  const e = output.lossFnOutputs.embedding;
  if (!e) throw new TrainerError('internal', `${what}: the trainer sent no embeddings`);
  const { parts } = decodeBatched(e, `${what} embeddings`);
  return {
    lossFnOutputs: parts.map((p) => ({
      embedding: {
        data: p instanceof Float32Array ? p : Float32Array.from(p),
        shape: [p.length],
        dtype: 'float32' as const,
      },
    })),
  };
}

export function decodeOutput(output: WireOutput | undefined, what: string): ForwardBackwardResult {
  if (!output) throw new TrainerError('internal', `${what}: the trainer sent no output`);
  const lp = output.lossFnOutputs.logprobs;
  if (!lp) throw new TrainerError('internal', `${what}: the trainer sent no logprobs`);
  const { parts, trailingShape } = decodeBatched(lp, `${what} logprobs`);
  const row = trailingShape.reduce((a, b) => a * b, 1);
  return {
    lossFnOutputs: parts.map((p) => ({
      logprobs: {
        data: p instanceof Float32Array ? p : Float32Array.from(p),
        shape: [p.length / row, ...trailingShape],
        dtype: 'float32' as const,
      },
    })),
    metrics: { ...output.metrics },
    lossFnOutputType: output.lossFnOutputType,
  };
}

/** AdamW hyper-parameters (src/recipes/optimizer.ts); unset ones take the engine's defaults. */
export type AdamParams = Partial<AdamWParams>;

export type GradAccumulationNormalizationInput =
  | 'num_loss_tokens'
  | 'num_sequences'
  | 'none'
  | null;

export interface OptimStepResult {
  /** Global gradient norm after normalisation, before clipping. */
  gradNorm: number;
  step: number;
  numLossTokens: number;
  numSequences: number;
  gradScale: number;
  metrics: Record<string, number>;
}

export interface SampleOptions {
  numSamples?: number;
  maxTokens?: number;
  /** Default 1; 0 = greedy. */
  temperature?: number;
  /** 0 = off. */
  topK?: number;
  topP?: number;
  seed?: number;
  /** Token ids that end a sample (included in its tokens). */
  stopTokens?: readonly number[];
  promptLogprobs?: boolean;
}

export interface SampledSequence {
  tokens: number[];
  logprobs: number[];
  stopReason: 'stop' | 'length';
}

export interface SampleResult {
  sequences: SampledSequence[];
  /** logprob of prompt[i] given prompt[..i]; null for i = 0. */
  promptLogprobs?: (number | null)[];
}
