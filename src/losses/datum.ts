/**
 * The loss-side datum: what a loss function sees for one sequence. It mirrors the Training
 * API's `Datum` — `model_input` tokens plus named `loss_fn_inputs` tensors, all in target
 * coordinates (entry j belongs to the prediction of token j+1) — and adds nothing a loss does
 * not read. Field readers here are the one place per-datum input is checked, so every loss
 * reports a bad row the same way: `datum 3: loss_fn_inputs.weights has 5 values, expected 6`.
 */
import { z } from 'zod';
import { inputError, LossError } from './errors.js';

export type NumericArray =
  | readonly number[]
  | Float64Array
  | Float32Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Uint8Array;

export type TensorDtype = 'int64' | 'int32' | 'float32' | 'float64';

/** A tensor as the Training API ships it: flat data plus an optional shape ([N] or [N, K]). */
export interface TensorData {
  readonly data: NumericArray;
  readonly shape?: readonly number[];
  readonly dtype?: TensorDtype;
}

export type TensorInput = NumericArray | TensorData;

/**
 * The named per-token inputs of a loss. Built-in losses read `target_tokens`, `weights`,
 * `logprobs` (sampling logprobs) and `advantages`; recipe losses also read `mask`,
 * `old_logprobs` (old-policy forward pass) and `ref_logprobs` (reference model).
 */
export type LossFnInputs = { readonly [field: string]: TensorInput | undefined };

export interface LossDatum {
  /** Input tokens T[0..N-2]; optional for losses that only need the targets. */
  readonly model_input?: readonly number[];
  readonly loss_fn_inputs: LossFnInputs;
}

export const FIELDS = {
  targetTokens: 'target_tokens',
  weights: 'weights',
  mask: 'mask',
  logprobs: 'logprobs',
  oldLogprobs: 'old_logprobs',
  refLogprobs: 'ref_logprobs',
  advantages: 'advantages',
} as const;

function isTensorData(x: TensorInput): x is TensorData {
  return !Array.isArray(x) && !ArrayBuffer.isView(x);
}

/**
 * The flat data and shape of a field (the shape checked against the data), or undefined when
 * the datum does not carry it. `index` is the datum's position, for error messages.
 */
export function readTensor(
  datum: LossDatum,
  field: string,
  index: number,
): { data: NumericArray; shape: readonly number[] } | undefined {
  const input = datum.loss_fn_inputs[field];
  if (input === undefined) return undefined;
  const t = isTensorData(input)
    ? { data: input.data, shape: input.shape ?? [input.data.length] }
    : { data: input, shape: [input.length] };
  checkShape(t, index, field, `loss_fn_inputs.${field}`);
  return t;
}

function toFloat64(data: NumericArray): Float64Array {
  return data instanceof Float64Array ? data : Float64Array.from(data);
}

/** Throws naming the first non-finite entry of `values`. */
export function assertFinite(values: ArrayLike<number>, datum: number, field: string): void {
  for (let j = 0; j < values.length; j++) {
    const v = values[j]!;
    // v - v is 0 for finite numbers and NaN for ±Infinity and NaN: one compare per entry.
    if (v - v !== 0) {
      throw inputError(datum, field, `${field}[${j}] is ${v}; every value must be finite`);
    }
  }
}

export interface ReadFloatsOptions {
  /** Name used in messages (defaults to `loss_fn_inputs.<field>`). */
  label?: string;
  /** Accept a single value and broadcast it (a per-sequence advantage). */
  allowScalar?: boolean;
  /** Skip the finiteness scan (the caller scans several fields in one pass). */
  skipFiniteCheck?: boolean;
}

/**
 * A float field as a Float64Array of `length` values (or 1 with allowScalar), checked for
 * length and finiteness. Undefined when absent. A Float64Array is returned without a copy.
 */
export function readFloats(
  datum: LossDatum,
  index: number,
  field: string,
  length: number,
  options: ReadFloatsOptions = {},
): Float64Array | undefined {
  const t = readTensor(datum, field, index);
  if (t === undefined) return undefined;
  const label = options.label ?? `loss_fn_inputs.${field}`;
  const n = t.data.length;
  if (n !== length && !(options.allowScalar && n === 1)) {
    const expected = options.allowScalar ? `1 or ${length}` : `${length}`;
    throw inputError(
      index,
      field,
      `${label} has ${n} values, expected ${expected} (one per logprob of the datum)`,
    );
  }
  const values = toFloat64(t.data);
  if (!options.skipFiniteCheck) assertFinite(values, index, label);
  return values;
}

/** Like readFloats, but a missing field is an error with the Training API's wording. */
export function requireFloats(
  datum: LossDatum,
  index: number,
  field: string,
  length: number,
  options: ReadFloatsOptions = {},
): Float64Array {
  const v = readFloats(datum, index, field, length, options);
  if (v === undefined) throw missingField(index, field);
  return v;
}

export function missingField(index: number, field: string): LossError {
  return inputError(index, field, `missing required field '${field}'`);
}

function checkShape(
  t: { data: NumericArray; shape: readonly number[] },
  index: number,
  field: string,
  label: string,
): void {
  let size = 1;
  for (const d of t.shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw inputError(index, field, `${label} has an invalid shape [${t.shape.join(', ')}]`);
    }
    size *= d;
  }
  if (size !== t.data.length) {
    throw inputError(
      index,
      field,
      `${label} has shape [${t.shape.join(', ')}] but ${t.data.length} values`,
    );
  }
}

/**
 * The per-token loss mask of a recipe datum: `weights` (what the Training API carries), else
 * `mask`. A token is active when its mask is > 0.5; losses multiply by the mask value.
 */
export function readMask(
  datum: LossDatum,
  index: number,
  length: number,
  lossName: string,
  options: ReadFloatsOptions = {},
): Float64Array {
  const w = readFloats(datum, index, FIELDS.weights, length, options);
  if (w !== undefined) return w;
  const m = readFloats(datum, index, FIELDS.mask, length, options);
  if (m !== undefined) return m;
  throw inputError(
    index,
    FIELDS.weights,
    `${lossName} needs a loss mask: set loss_fn_inputs.weights (1 on sampled tokens, 0 on prompt and tool tokens)`,
  );
}

/** Full token sequence T[0..N-1] of a datum: model_input plus the last target. */
export function sequenceTokens(datum: LossDatum, index: number): number[] | undefined {
  const targets = readTensor(datum, FIELDS.targetTokens, index);
  if (datum.model_input === undefined || targets === undefined) return undefined;
  if (targets.data.length !== datum.model_input.length) {
    throw inputError(
      index,
      FIELDS.targetTokens,
      `target_tokens has ${targets.data.length} values but model_input has ${datum.model_input.length} tokens`,
    );
  }
  if (targets.data.length === 0) return [...datum.model_input];
  return [...datum.model_input, targets.data[targets.data.length - 1]!];
}

// ---------------------------------------------------------------------------------------
// Building datums
// ---------------------------------------------------------------------------------------

/** A datum from a token sequence with per-target weights (the SDK's tokens/targets/weights). */
export function fromTokenDatum(d: {
  readonly tokens: readonly number[];
  readonly targets: readonly number[];
  readonly weights: readonly number[];
}): LossDatum {
  return {
    model_input: d.tokens,
    loss_fn_inputs: { target_tokens: d.targets, weights: d.weights },
  };
}

/** One rollout as the RL recipes produce it: parallel per-token lists plus a reward. */
export interface RolloutSample {
  readonly tokens: readonly number[];
  /** Sampling logprob of each token; 0.0 where the model did not generate it. */
  readonly logprobs: readonly number[];
  /** 1 on generated (trainable) tokens, 0 on prompt, user and tool tokens. */
  readonly loss_mask: readonly number[];
  readonly reward: number;
  readonly finish_reason?: string;
  readonly text?: string;
}

/**
 * The training datum of a rollout: target = tokens[1:], weights = loss_mask[1:], rollout
 * logprobs = logprobs[1:]; prompt_len is the index of the first token with mask > 0.
 */
export function rolloutSampleToDatum(
  sample: RolloutSample,
  index = 0,
): { datum: LossDatum; promptLen: number } {
  const n = sample.tokens.length;
  if (n < 2) throw inputError(index, 'tokens', 'a rollout needs at least two tokens');
  if (sample.logprobs.length !== n) {
    throw inputError(
      index,
      'logprobs',
      `rollout has ${n} tokens but ${sample.logprobs.length} logprobs; the lists must be parallel`,
    );
  }
  if (sample.loss_mask.length !== n) {
    throw inputError(
      index,
      'loss_mask',
      `rollout has ${n} tokens but ${sample.loss_mask.length} loss_mask entries; the lists must be parallel`,
    );
  }
  assertFinite(sample.logprobs, index, 'logprobs');
  assertFinite(sample.loss_mask, index, 'loss_mask');
  const first = sample.loss_mask.findIndex((m) => m > 0);
  return {
    datum: {
      model_input: sample.tokens.slice(0, -1),
      loss_fn_inputs: {
        target_tokens: sample.tokens.slice(1),
        weights: sample.loss_mask.slice(1),
        logprobs: sample.logprobs.slice(1),
      },
    },
    promptLen: first < 0 ? n : first,
  };
}

/**
 * Completion-only sampler logprobs in target coordinates: left-padded with prompt_len - 1
 * zeros to N - 1 entries. ([-0.5, -0.6], prompt_len 3, 5 tokens → [0, 0, -0.5, -0.6].)
 */
export function alignCompletionLogprobs(
  completion: readonly number[],
  promptLen: number,
  numTokens: number,
): number[] {
  const start = Math.max(0, promptLen - 1);
  const expected = numTokens - 1 - start;
  if (!Number.isInteger(promptLen) || promptLen < 0 || promptLen > numTokens) {
    throw new LossError(
      'invalid_loss_input',
      `prompt_len ${promptLen} is not a valid prompt length for ${numTokens} tokens`,
    );
  }
  if (completion.length !== expected) {
    throw new LossError(
      'invalid_loss_input',
      `expected ${expected} completion logprobs for ${numTokens} tokens with prompt_len ${promptLen}, got ${completion.length}`,
    );
  }
  return [...new Array<number>(start).fill(0), ...completion];
}

// ---------------------------------------------------------------------------------------
// Boundary schema (untrusted JSON → LossDatum)
// ---------------------------------------------------------------------------------------

const tensorDataSchema = z
  .object({
    data: z.array(z.number()),
    shape: z.array(z.number().int().nonnegative()).optional(),
    dtype: z.enum(['int64', 'int32', 'float32', 'float64']).optional(),
  })
  .refine((t) => !t.shape || t.shape.reduce((a, b) => a * b, 1) === t.data.length, {
    message: 'shape does not match the number of values',
  });

/** Validates a datum from the wire: finite numbers only, shapes consistent with data. */
export const lossDatumSchema = z.object({
  model_input: z.array(z.number().int().nonnegative()).optional(),
  loss_fn_inputs: z.record(z.string(), z.union([z.array(z.number()), tensorDataSchema])),
});

export function parseLossDatums(input: unknown): LossDatum[] {
  const r = z.array(lossDatumSchema).safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0];
    const path = issue?.path ?? [];
    const datum = typeof path[0] === 'number' ? path[0] : undefined;
    throw new LossError(
      'invalid_loss_input',
      `invalid datums at ${path.join('.') || '(root)'}: ${issue?.message ?? 'malformed'}`,
      { datum, field: typeof path[2] === 'string' ? path[2] : undefined },
    );
  }
  return r.data;
}
