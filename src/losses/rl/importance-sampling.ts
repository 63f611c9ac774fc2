/**
 * Unclipped ratio losses.
 *
 * Importance sampling: loss = -Σ exp(clamp(lp - old, ±cap))·A·w·mask — off-policy correction
 * against the old policy, TIS-weighted for the train/inference gap.
 *
 * REINFORCE: loss = Σ -exp(clamp(lp - rollout, ±20))·A·mask — the ratio straight to the
 * sampler, so no TIS. With klBeta > 0 it adds β·(lp - ref) DETACHED: the value shows the
 * penalty, the gradient ignores it (the reference only enters the metrics).
 */
import { z } from 'zod';
import { parseConfig } from '../config.js';
import { inputError } from '../errors.js';
import type { LossFn } from '../types.js';
import {
  type KernelContext,
  observePpoKl,
  type PolicyKernel,
  policyBaseSchema,
  policyLoss,
} from './common.js';
import { SAFETY_CLAMP } from './tis.js';

/** -exp(clamp(lp - base, ±cap))·A·w per token, base being old (IS) or rollout (REINFORCE). */
function ratioKernel(cap: number, base: 'old' | 'rollout', klBeta: number): PolicyKernel {
  return ({ lp, inputs, tis, partial, stats }: KernelContext) => {
    const { n, mask, adv, advStride, ref } = inputs;
    const b = base === 'old' ? inputs.old : inputs.rollout;
    let total = 0;
    for (let j = 0; j < n; j++) {
      const m = mask[j]!;
      if (m === 0) continue;
      const a = adv[j * advStride]!;
      const d = lp[j]! - b[j]!;
      const inside = d >= -cap && d <= cap;
      const dc = inside ? d : d < 0 ? -cap : cap;
      const r = Math.exp(dc);
      const l = -r * a * tis[j]!;
      total += l * m;
      partial[j] = inside ? l * m : 0;
      if (m > 0.5) {
        stats.ratioSum += r;
        // IS's ratio is to the old policy, so it gives ppo_kl for free.
        if (base === 'old') stats.ppoKlSum += r - dc - 1;
      }
    }
    if (klBeta > 0 && ref !== undefined) {
      let penalty = 0;
      for (let j = 0; j < n; j++) penalty += klBeta * (lp[j]! - ref[j]!) * mask[j]!;
      total += penalty;
      stats.klPenaltySum += penalty;
    }
    if (base === 'rollout') observePpoKl(lp, inputs, stats);
    return total;
  };
}

export const importanceSamplingConfigSchema = z
  .strictObject({
    ratioLogCap: z.number().min(0).default(SAFETY_CLAMP),
    ...policyBaseSchema,
  })
  .readonly();

export type ImportanceSamplingConfig = z.input<typeof importanceSamplingConfigSchema>;

export function importanceSamplingLoss(config: ImportanceSamplingConfig = {}): LossFn {
  const c = parseConfig('importance_sampling', importanceSamplingConfigSchema, config);
  return policyLoss({
    label: 'importance_sampling',
    kernel: ratioKernel(c.ratioLogCap, 'old', 0),
    tis: c.tis,
    aggregation: c.aggregation,
    ratioMetric: 'is_ratio',
    clipMetric: null,
  });
}

export const reinforceConfigSchema = z
  .strictObject({
    klBeta: z.number().min(0).default(0),
    aggregation: policyBaseSchema.aggregation,
  })
  .readonly();

export type ReinforceConfig = z.input<typeof reinforceConfigSchema>;

export function reinforceLoss(config: ReinforceConfig = {}): LossFn {
  const c = parseConfig('REINFORCE', reinforceConfigSchema, config);
  const inner = policyLoss({
    label: 'REINFORCE',
    kernel: ratioKernel(SAFETY_CLAMP, 'rollout', c.klBeta),
    tis: null,
    aggregation: c.aggregation,
    ratioMetric: 'is_ratio',
    clipMetric: null,
  });
  if (c.klBeta === 0) return inner;
  return (data, logprobs) => {
    data.forEach((d, i) => {
      if (d.loss_fn_inputs.ref_logprobs === undefined) {
        throw inputError(
          i,
          'ref_logprobs',
          'REINFORCE with klBeta > 0 needs loss_fn_inputs.ref_logprobs (reference model logprobs)',
        );
      }
    });
    return inner(data, logprobs);
  };
}
