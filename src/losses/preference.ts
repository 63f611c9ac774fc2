/**
 * Preference losses over [chosen, rejected] datum pairs (data = [c0, r0, c1, r1, ...]).
 * Both sequences of a pair share a prompt; the response starts where their tokens first
 * differ (rs = longest common token prefix), so the logprob index of the first response
 * token is s = max(0, rs - 1) and every sum below runs over [s:].
 *
 * DPO:  m = (Σπc - Σrefc) - (Σπr - Σrefr);  loss = mean over pairs of -log σ(β·m).
 * ORPO: sft = -mean πc;  log-odds lo(x) = x - log(1 - eˣ) of the clamped mean logprobs;
 *       loss = Σ over pairs of sft + λ·(-log σ(lo(c) - lo(r))).
 */
import { z } from 'zod';
import {
  addAll,
  clamp,
  div,
  log1mexp,
  logsigmoid,
  mul,
  neg,
  slice,
  sub,
  sum,
} from './autodiff/ops.js';
import type { Vector } from './autodiff/vector.js';
import { parseConfig } from './config.js';
import { FIELDS, type LossDatum, readTensor, requireFloats, sequenceTokens } from './datum.js';
import { inputError, LossError } from './errors.js';
import type { LossFn } from './types.js';

export function commonPrefixLength(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * rs of a pair in full-sequence coordinates. With model_input the full sequences are compared;
 * with target_tokens only, the first token (T[0], never a target) is taken as shared.
 */
export function pairResponseStart(
  chosen: LossDatum,
  rejected: LossDatum,
  chosenIndex: number,
): number {
  const tc = sequenceTokens(chosen, chosenIndex);
  const tr = sequenceTokens(rejected, chosenIndex + 1);
  if (tc && tr) return commonPrefixLength(tc, tr);
  const gc = readTensor(chosen, FIELDS.targetTokens, chosenIndex);
  const gr = readTensor(rejected, FIELDS.targetTokens, chosenIndex + 1);
  if (gc && gr) return 1 + commonPrefixLength(gc.data, gr.data);
  throw inputError(
    chosenIndex,
    FIELDS.targetTokens,
    'a preference pair needs token ids to find where the responses diverge: give model_input and target_tokens, or pass responseStarts',
  );
}

function pairs(label: string, data: readonly LossDatum[], logprobs: readonly Vector[]): number {
  if (data.length !== logprobs.length) {
    throw new LossError(
      'invalid_loss_input',
      `${label}: ${data.length} datums but ${logprobs.length} logprob vectors`,
    );
  }
  if (data.length === 0 || data.length % 2 !== 0) {
    throw new LossError(
      'invalid_loss_input',
      `${label} expects datums as [chosen, rejected] pairs; got ${data.length} datums`,
    );
  }
  return data.length / 2;
}

function startOf(
  starts: readonly number[] | undefined,
  p: number,
  data: readonly LossDatum[],
): number {
  if (starts) {
    const rs = starts[p];
    if (rs === undefined) {
      throw new LossError(
        'invalid_loss_input',
        `responseStarts has ${starts.length} entries but the batch has more pairs (pair ${p})`,
      );
    }
    return Math.max(0, rs - 1);
  }
  return Math.max(0, pairResponseStart(data[2 * p]!, data[2 * p + 1]!, 2 * p) - 1);
}

function sumFrom(values: Float64Array, s: number): number {
  let total = 0;
  for (let j = s; j < values.length; j++) total += values[j]!;
  return total;
}

const responseStarts = z.array(z.number().int().nonnegative()).optional();

export const dpoConfigSchema = z.strictObject({
  beta: z
    .number()
    .gt(0, { message: 'DPO beta must satisfy 0 < beta < 0.5' })
    .lt(0.5, { message: 'DPO beta must satisfy 0 < beta < 0.5' })
    .default(0.1),
  /** Full-sequence index where each pair's response starts; computed from tokens if absent. */
  responseStarts,
});

export type DpoConfig = z.input<typeof dpoConfigSchema>;

/** DPO over pairs; each datum carries `ref_logprobs` from the frozen reference model. */
export function dpoLoss(config: DpoConfig = {}): LossFn {
  const c = parseConfig('DPO', dpoConfigSchema, config);
  const beta = c.beta;
  return (data, logprobs) => {
    const nPairs = pairs('DPO', data, logprobs);
    const losses: Vector[] = [];
    let marginSum = 0;
    let correct = 0;
    let chosenReward = 0;
    let rejectedReward = 0;
    for (let p = 0; p < nPairs; p++) {
      const ic = 2 * p;
      const lpc = logprobs[ic]!;
      const lpr = logprobs[ic + 1]!;
      const refc = requireFloats(data[ic]!, ic, FIELDS.refLogprobs, lpc.length);
      const refr = requireFloats(data[ic + 1]!, ic + 1, FIELDS.refLogprobs, lpr.length);
      const s = startOf(c.responseStarts, p, data);
      const chosen = sub(sum(slice(lpc, s)), sumFrom(refc, s));
      const rejected = sub(sum(slice(lpr, s)), sumFrom(refr, s));
      const margin = sub(chosen, rejected);
      losses.push(neg(logsigmoid(mul(margin, beta))));
      const m = margin.item();
      marginSum += m;
      if (m > 0) correct++;
      chosenReward += beta * chosen.item();
      rejectedReward += beta * rejected.item();
    }
    const loss = div(addAll(losses), nPairs);
    return {
      loss,
      metrics: {
        'dpo_loss:mean': loss.item(),
        'margin:mean': marginSum / nPairs,
        'accuracy:mean': correct / nPairs,
        'chosen_reward:mean': chosenReward / nPairs,
        'rejected_reward:mean': rejectedReward / nPairs,
        'pairs:sum': nPairs,
      },
    };
  };
}

export const orpoConfigSchema = z.strictObject({
  /** Weight of the odds-ratio term against the SFT term. */
  lambda: z.number().min(0).default(1),
  responseStarts,
});

export type OrpoConfig = z.input<typeof orpoConfigSchema>;

/** Log-odds of a mean logprob, clamped away from 0 and -∞ so both logs stay finite. */
function logOdds(meanLp: Vector): Vector {
  const x = clamp(meanLp, -50, -1e-6);
  return sub(x, log1mexp(x));
}

export function orpoLoss(config: OrpoConfig = {}): LossFn {
  const c = parseConfig('ORPO', orpoConfigSchema, config);
  return (data, logprobs) => {
    const nPairs = pairs('ORPO', data, logprobs);
    const losses: Vector[] = [];
    const totals = { sft: 0, or: 0, lor: 0, correct: 0, chosen: 0, rejected: 0 };
    for (let p = 0; p < nPairs; p++) {
      const s = startOf(c.responseStarts, p, data);
      const respC = slice(logprobs[2 * p]!, s);
      const respR = slice(logprobs[2 * p + 1]!, s);
      const meanC = div(sum(respC), Math.max(respC.length, 1));
      const meanR = div(sum(respR), Math.max(respR.length, 1));
      const sft = neg(meanC);
      const lor = sub(logOdds(meanC), logOdds(meanR));
      const or = neg(logsigmoid(lor));
      losses.push(addAll([sft, mul(or, c.lambda)]));
      totals.sft += sft.item();
      totals.or += or.item();
      totals.lor += lor.item();
      if (lor.item() > 0) totals.correct++;
      totals.chosen += meanC.item();
      totals.rejected += meanR.item();
    }
    const loss = addAll(losses);
    return {
      loss,
      metrics: {
        'orpo_loss:mean': loss.item() / nPairs,
        'sft_loss:mean': totals.sft / nPairs,
        'or_loss:mean': totals.or / nPairs,
        'log_odds_ratio:mean': totals.lor / nPairs,
        'accuracy:mean': totals.correct / nPairs,
        'chosen_avg_lp:mean': totals.chosen / nPairs,
        'rejected_avg_lp:mean': totals.rejected / nPairs,
        'pairs:sum': nPairs,
      },
    };
  };
}
