/**
 * The Training API's built-in losses, computed server side by a trainer pod. All of them are
 * plain SUMS over tokens with no normalisation (optim_step's grad_accumulation_normalization
 * does that), read only `target_tokens`, `weights`, `logprobs` (sampling logprobs q) and
 * `advantages` (A), and report `loss:sum`. With r = exp(lp - q):
 *
 *   cross_entropy        -Σ lp·w                                  (any real w; [N] or [N, K])
 *   importance_sampling  -Σ r·A                 ratio_log_cap clamps lp - q
 *   ppo                  -Σ min(r·A, clamp(r, lo, hi)·A)          lo 0.8, hi 1.2
 *   cispo                -Σ sg(clamp(r, lo, hi))·lp·A             lo 0.8, hi 1.2
 *   dro                  -Σ (lp·A - ½·β·(lp - q)²)                β 0.05
 *
 * Each is one fused loop per datum computing the token losses and their derivatives.
 */
import { z } from 'zod';
import { fusedScalar } from './autodiff/fused.js';
import type { Vector } from './autodiff/vector.js';
import { parseConfig } from './config.js';
import { FIELDS, type LossDatum, missingField, readFloats, readTensor } from './datum.js';
import { inputError, LossError } from './errors.js';
import type { LossFn } from './types.js';

export const BUILTIN_LOSS_NAMES = [
  'cross_entropy',
  'importance_sampling',
  'ppo',
  'cispo',
  'dro',
] as const;
export type BuiltinLossName = (typeof BUILTIN_LOSS_NAMES)[number];

const ratioLogCap = z.number().nonnegative().optional();

const clipConfig = z
  .strictObject({
    clip_low_threshold: z.number().nonnegative().default(0.8),
    clip_high_threshold: z.number().nonnegative().default(1.2),
    ratio_log_cap: ratioLogCap,
  })
  .refine((c) => c.clip_low_threshold <= 1 && c.clip_high_threshold >= 1, {
    message: 'need clip_low_threshold <= 1 <= clip_high_threshold',
  });

export const builtinConfigSchemas = {
  cross_entropy: z.strictObject({}),
  importance_sampling: z.strictObject({ ratio_log_cap: ratioLogCap }),
  ppo: clipConfig,
  cispo: clipConfig,
  dro: z.strictObject({ beta: z.number().nonnegative().default(0.05) }),
} as const;

export type BuiltinLossConfig<N extends BuiltinLossName> = z.input<
  (typeof builtinConfigSchemas)[N]
>;

export function isBuiltinLossName(name: string): name is BuiltinLossName {
  return (BUILTIN_LOSS_NAMES as readonly string[]).includes(name);
}

const CE_FIELDS: readonly string[] = [FIELDS.targetTokens, FIELDS.weights];
const RL_FIELDS: readonly string[] = [FIELDS.targetTokens, FIELDS.logprobs, FIELDS.advantages];

/** Rejects fields the server-side loss would not read (a stray `mask` would silently do nothing). */
function checkFields(name: string, datum: LossDatum, index: number, allowed: readonly string[]) {
  for (const key of Object.keys(datum.loss_fn_inputs)) {
    if (datum.loss_fn_inputs[key] === undefined || allowed.includes(key)) continue;
    throw inputError(
      index,
      key,
      `loss_fn_inputs has field '${key}', which built-in loss '${name}' does not read (it takes ${allowed.join(', ')}); fold masks into weights or advantages`,
    );
  }
}

/** Checks target_tokens is present and shaped like the logprobs (N, or N×K for top-K). */
function checkTargets(datum: LossDatum, index: number, n: number): void {
  const t = readTensor(datum, FIELDS.targetTokens, index);
  if (t === undefined) throw missingField(index, FIELDS.targetTokens);
  if (t.data.length !== n) {
    throw inputError(
      index,
      FIELDS.targetTokens,
      `target_tokens has ${t.data.length} values but logprobs has ${n}`,
    );
  }
}

function need(datum: LossDatum, index: number, field: string, n: number): Float64Array {
  const v = readFloats(datum, index, field, n);
  if (v === undefined) throw missingField(index, field);
  return v;
}

/** Per-datum kernel: fills `partial` with d(loss)/d(lp) and returns the datum's loss. */
type Kernel = (lp: Float64Array, datum: LossDatum, index: number, partial: Float64Array) => number;

function sumOverDatums(name: string, allowed: readonly string[], kernel: Kernel): LossFn {
  return (data, logprobs) => {
    if (data.length !== logprobs.length) {
      throw new LossError(
        'invalid_loss_input',
        `${name}: ${data.length} datums but ${logprobs.length} logprob vectors`,
      );
    }
    let total = 0;
    const partials: Float64Array[] = [];
    for (let i = 0; i < data.length; i++) {
      const datum = data[i]!;
      const lp = logprobs[i]!.value;
      checkFields(name, datum, i, allowed);
      checkTargets(datum, i, lp.length);
      const partial = new Float64Array(lp.length);
      total += kernel(lp, datum, i, partial);
      partials.push(partial);
    }
    return {
      loss: fusedScalar(logprobs as Vector[], total, partials),
      metrics: { 'loss:sum': total },
    };
  };
}

function crossEntropy(): LossFn {
  return sumOverDatums('cross_entropy', CE_FIELDS, (lp, datum, i, partial) => {
    const w = need(datum, i, FIELDS.weights, lp.length);
    let s = 0;
    for (let j = 0; j < lp.length; j++) {
      s -= lp[j]! * w[j]!;
      partial[j] = -w[j]!;
    }
    return s;
  });
}

/** The RL built-ins share their inputs: sampling logprobs q and per-token advantages A. */
function rlKernel(
  body: (lp: number, q: number, a: number, j: number, partial: Float64Array) => number,
): Kernel {
  return (lp, datum, i, partial) => {
    const q = need(datum, i, FIELDS.logprobs, lp.length);
    const a = need(datum, i, FIELDS.advantages, lp.length);
    let s = 0;
    for (let j = 0; j < lp.length; j++) s += body(lp[j]!, q[j]!, a[j]!, j, partial);
    return s;
  };
}

function importanceSampling(cap: number): LossFn {
  return sumOverDatums(
    'importance_sampling',
    RL_FIELDS,
    rlKernel((lp, q, a, j, partial) => {
      const d = lp - q;
      const r = Math.exp(d < -cap ? -cap : Math.min(d, cap));
      partial[j] = d >= -cap && d <= cap ? -r * a : 0;
      return -r * a;
    }),
  );
}

function ppo(lo: number, hi: number, cap: number): LossFn {
  return sumOverDatums(
    'ppo',
    RL_FIELDS,
    rlKernel((lp, q, a, j, partial) => {
      const d = lp - q;
      const inside = d >= -cap && d <= cap;
      const r = Math.exp(d < -cap ? -cap : Math.min(d, cap));
      const rc = r < lo ? lo : Math.min(r, hi);
      const s1 = -r * a;
      const s2 = -rc * a;
      // -min(rA, rcA) = max(-rA, -rcA); the clipped branch has no gradient outside [lo, hi].
      if (s1 >= s2) {
        partial[j] = inside ? -r * a : 0;
        return s1;
      }
      partial[j] = inside && r >= lo && r <= hi ? -r * a : 0;
      return s2;
    }),
  );
}

function cispo(lo: number, hi: number, cap: number): LossFn {
  return sumOverDatums(
    'cispo',
    RL_FIELDS,
    rlKernel((lp, q, a, j, partial) => {
      const d = lp - q;
      const r = Math.exp(d < -cap ? -cap : Math.min(d, cap));
      const rc = r < lo ? lo : Math.min(r, hi);
      // The clipped ratio is a stop-gradient weight: the gradient flows through lp only.
      partial[j] = -rc * a;
      return -rc * lp * a;
    }),
  );
}

function dro(beta: number): LossFn {
  return sumOverDatums(
    'dro',
    RL_FIELDS,
    rlKernel((lp, q, a, j, partial) => {
      const d = lp - q;
      partial[j] = -(a - beta * d);
      return -(lp * a - 0.5 * beta * d * d);
    }),
  );
}

/** A built-in loss by name, its config validated (unknown keys and bad ranges rejected). */
export function builtinLoss(name: string, config?: unknown): LossFn {
  if (!isBuiltinLossName(name)) {
    throw new LossError(
      'unknown_loss',
      `unknown built-in loss '${name}'; built-in losses are ${BUILTIN_LOSS_NAMES.join(', ')}`,
    );
  }
  const what = `built-in loss '${name}'`;
  switch (name) {
    case 'cross_entropy':
      parseConfig(what, builtinConfigSchemas.cross_entropy, config);
      return crossEntropy();
    case 'importance_sampling': {
      const c = parseConfig(what, builtinConfigSchemas.importance_sampling, config);
      return importanceSampling(c.ratio_log_cap ?? Number.POSITIVE_INFINITY);
    }
    case 'ppo': {
      const c = parseConfig(what, builtinConfigSchemas.ppo, config);
      const cap = c.ratio_log_cap ?? Number.POSITIVE_INFINITY;
      return ppo(c.clip_low_threshold, c.clip_high_threshold, cap);
    }
    case 'cispo': {
      const c = parseConfig(what, builtinConfigSchemas.cispo, config);
      const cap = c.ratio_log_cap ?? Number.POSITIVE_INFINITY;
      return cispo(c.clip_low_threshold, c.clip_high_threshold, cap);
    }
    case 'dro':
      return dro(parseConfig(what, builtinConfigSchemas.dro, config).beta);
  }
}
