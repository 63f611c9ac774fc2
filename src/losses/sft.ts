/**
 * Supervised fine-tuning. The objective is the sum over examples of each example's token-mean
 * NLL, so a long example weighs as much as a short one; the reported `ce_loss` is the batch's
 * token-weighted mean (Σ NLL / Σ weights), the number to compare across runs.
 *
 * The same objective can run server side as `cross_entropy` on weights reduced with "mean"
 * (each example's weights divided by their sum): targetWeights() builds those.
 */
import { z } from 'zod';
import { addAll, div, dot, neg } from './autodiff/ops.js';
import type { Vector } from './autodiff/vector.js';
import { parseConfig } from './config.js';
import { FIELDS, requireFloats } from './datum.js';
import { configError, LossError } from './errors.js';
import type { Metrics } from './metrics.js';
import type { LossFn } from './types.js';

export type WeightReduction = 'none' | 'mean';

/**
 * Per-target weights from per-token weights of the full sequence: drop the first (T[0] is
 * never predicted) and, with "mean", divide by their sum. [0,1,1,1] → [1/3, 1/3, 1/3].
 */
export function targetWeights(
  tokenWeights: readonly number[],
  reduction: WeightReduction = 'none',
): number[] {
  if (tokenWeights.length < 2) {
    throw configError('a sequence needs at least two tokens to have targets');
  }
  const w = tokenWeights.slice(1);
  if (reduction === 'none') return w;
  const total = w.reduce((a, b) => a + b, 0);
  return total === 0 ? w.map(() => 0) : w.map((x) => x / total);
}

export const sftConfigSchema = z.strictObject({
  /**
   * Prompt length of each example (full-sequence tokens). Tokens from max(0, len - 1) on are
   * trained with weight 1. Without it, each datum's `weights` are used.
   */
  promptLens: z.array(z.number().int().nonnegative()).optional(),
});

export type SftConfig = z.input<typeof sftConfigSchema>;

export function sftLoss(config: SftConfig = {}): LossFn {
  const c = parseConfig('SFT', sftConfigSchema, config);
  return (data, logprobs) => {
    if (data.length !== logprobs.length) {
      throw new LossError(
        'invalid_loss_input',
        `SFT: ${data.length} datums but ${logprobs.length} logprob vectors`,
      );
    }
    const terms: Vector[] = [];
    let nllSum = 0;
    let weightSum = 0;
    let tokens = 0;
    for (let i = 0; i < data.length; i++) {
      const lp = logprobs[i]!;
      const w = weightsOf(c.promptLens, data, i, lp.length);
      let total = 0;
      for (let j = 0; j < w.length; j++) {
        total += w[j]!;
        if (w[j] !== 0) tokens++;
      }
      if (total === 0) continue;
      const nll = neg(dot(lp, w));
      terms.push(div(nll, total));
      nllSum += nll.item();
      weightSum += total;
    }
    const loss = addAll(terms);
    const ce = weightSum > 0 ? nllSum / weightSum : 0;
    const metrics: Metrics = {
      'loss:sum': loss.item(),
      'ce_loss:mean': ce,
      'ce_loss_sum:sum': nllSum,
      'response_tokens:sum': tokens,
    };
    const ppl = Math.exp(ce);
    if (Number.isFinite(ppl)) metrics['ppl:mean'] = ppl;
    return { loss, metrics };
  };
}

function weightsOf(
  promptLens: readonly number[] | undefined,
  data: Parameters<LossFn>[0],
  i: number,
  n: number,
): Float64Array {
  if (!promptLens) return requireFloats(data[i]!, i, FIELDS.weights, n);
  const pl = promptLens[i];
  if (pl === undefined) {
    throw new LossError(
      'invalid_loss_input',
      `SFT promptLens has ${promptLens.length} entries but datum ${i} needs one`,
      { datum: i },
    );
  }
  const w = new Float64Array(n);
  w.fill(1, Math.min(Math.max(0, pl - 1), n));
  return w;
}
