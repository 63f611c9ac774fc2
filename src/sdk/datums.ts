// Building Training API datums: from tokens and per-token weights (weight-based, for custom
// losses), with explicit target tokens (for built-in losses), or from a conversation through
// a chat renderer. All builders share one truncation rule: a sequence longer than maxLength
// keeps its first maxLength tokens (the end is cut, as the reference cookbook does), weights
// cut with it.

import { FIELDS } from '../losses/index.js';
import type { MessageInput, Renderer } from '../tokenizers/index.js';
import { ModelInput, type TrainingDatum } from './types.js';

/** The engine's form of a datum: inputs, the target at each position, a weight per target. */
export interface Datum {
  tokens: number[];
  targets: number[];
  weights: number[];
}

export interface DatumOptions {
  /** Longest sequence kept (in tokens, before shifting); longer ones lose their end. */
  maxLength?: number;
}

/** The shared truncation rule: keep the first maxLength tokens (and weights). */
export function truncateSequence(
  tokens: readonly number[],
  weights: readonly number[],
  maxLength?: number,
): { tokens: number[]; weights: number[] } {
  if (tokens.length !== weights.length)
    throw new Error(`datum: ${tokens.length} tokens but ${weights.length} weights`);
  if (maxLength !== undefined && (!Number.isInteger(maxLength) || maxLength < 2))
    throw new Error(`datum: maxLength must be an integer >= 2 (got ${maxLength})`);
  const n = maxLength === undefined ? tokens.length : Math.min(tokens.length, maxLength);
  return { tokens: tokens.slice(0, n), weights: weights.slice(0, n) };
}

/**
 * Next-token datum from a token sequence with per-token weights: position i predicts
 * sequence[i + 1] with weight weights[i + 1] (the weight belongs to the predicted token).
 */
export function nextTokenDatum(
  sequence: readonly number[],
  weights: readonly number[],
  opts: DatumOptions = {},
): Datum {
  const t = truncateSequence(sequence, weights, opts.maxLength);
  if (t.tokens.length < 2) throw new Error('datum: a sequence needs at least two tokens');
  return { tokens: t.tokens.slice(0, -1), targets: t.tokens.slice(1), weights: t.weights.slice(1) };
}

/** SFT datum from a conversation: assistant tokens weighted 1, the rest 0 (per the renderer). */
export function conversationDatum(
  renderer: Renderer,
  messages: readonly MessageInput[],
  opts: DatumOptions = {},
): Datum {
  const { tokens, weights } = renderer.render(messages);
  return nextTokenDatum(tokens, weights, opts);
}

/**
 * Weight-based Training API datum (`datum_from_model_input_weights`): the model input is the
 * whole sequence and `weights` are in target coordinates (one per next token). Works with
 * custom losses; built-in losses need target tokens (see targetTokenDatum).
 */
export function datumFromModelInputWeights(
  modelInput: ModelInput | readonly number[],
  weights: readonly number[],
  opts: DatumOptions = {},
): TrainingDatum {
  const t = truncateSequence(ModelInput.toInts(modelInput), weights, opts.maxLength);
  if (t.tokens.length < 2) throw new Error('datum: a sequence needs at least two tokens');
  return {
    modelInput: ModelInput.fromInts(t.tokens),
    lossFnInputs: { [FIELDS.weights]: t.weights.slice(1) },
  };
}

/**
 * Target-token Training API datum: model input T[0..N-2], `target_tokens` T[1..N-1] and, when
 * given, `weights` in target coordinates. The form built-in losses need.
 */
export function targetTokenDatum(
  tokens: readonly number[],
  opts: DatumOptions & { weights?: readonly number[] } = {},
): TrainingDatum {
  const d = nextTokenDatum(tokens, opts.weights ?? tokens.map(() => 1), opts);
  const lossFnInputs: Record<string, number[]> = { [FIELDS.targetTokens]: d.targets };
  if (opts.weights) lossFnInputs[FIELDS.weights] = d.weights;
  return { modelInput: ModelInput.fromInts(d.tokens), lossFnInputs };
}

/** A conversation as a target-token datum with the renderer's loss weights. */
export function conversationTrainingDatum(
  renderer: Renderer,
  messages: readonly MessageInput[],
  opts: DatumOptions = {},
): TrainingDatum {
  const { tokens, weights } = renderer.render(messages);
  return targetTokenDatum(tokens, { ...opts, weights });
}
