/**
 * GSPO-token: a sequence-level importance ratio with token-level gradients. For a datum,
 * m = mean over its active tokens of (lp - old) (detached), and every token gets
 *
 *   log s_t = lp_t - sg(lp_t) + sg(m), capped at seqRatioLogCap (10)
 *
 * whose value is m for all tokens but whose gradient is per token (d s_t/d lp_t = s_t). Then
 * sc = clamp(s, 1 - low, 1 + high) and loss = Σ max(-s·A, -sc·A)·w·mask.
 */
import { z } from 'zod';
import { parseConfig } from '../config.js';
import type { LossFn } from '../types.js';
import {
  type KernelContext,
  observePpoKl,
  type PolicyKernel,
  policyBaseSchema,
  policyLoss,
} from './common.js';

function gspoKernel(lo: number, hi: number, logCap: number): PolicyKernel {
  return ({ lp, inputs, tis, partial, stats }: KernelContext) => {
    const { n, mask, adv, advStride, old, active } = inputs;
    if (active === 0) return 0;
    let sumLog = 0;
    for (let j = 0; j < n; j++) if (mask[j]! > 0.5) sumLog += lp[j]! - old[j]!;
    const m = sumLog / active;
    // The cap is a clamp on log s: its gradient passes only while m <= cap.
    const passes = m <= logCap;
    const s = Math.exp(passes ? m : logCap);
    const sc = s < lo ? lo : Math.min(s, hi);
    const sInRange = s >= lo && s <= hi;
    let total = 0;
    for (let j = 0; j < n; j++) {
      const mk = mask[j]!;
      if (mk === 0) continue;
      const a = adv[j * advStride]!;
      const s1 = -s * a;
      const s2 = -sc * a;
      let l: number;
      let dl: number;
      if (s1 >= s2) {
        l = s1;
        dl = passes ? s1 : 0;
      } else {
        l = s2;
        dl = passes && sInRange ? s1 : 0;
      }
      const w = tis[j]!;
      total += l * w * mk;
      partial[j] = dl * w * mk;
    }
    stats.ratioSum += s * active;
    if (sc !== s) stats.clipped += active;
    observePpoKl(lp, inputs, stats);
    return total;
  };
}

export const gspoConfigSchema = z
  .strictObject({
    clipRatioLow: z.number().min(0).max(1).default(0.2),
    clipRatioHigh: z.number().min(0).default(0.2),
    seqRatioLogCap: z.number().min(0).default(10),
    ...policyBaseSchema,
  })
  .readonly();

export type GspoConfig = z.input<typeof gspoConfigSchema>;

export function gspoLoss(config: GspoConfig = {}): LossFn {
  const c = parseConfig('GSPO', gspoConfigSchema, config);
  return policyLoss({
    label: 'GSPO',
    kernel: gspoKernel(1 - c.clipRatioLow, 1 + c.clipRatioHigh, c.seqRatioLogCap),
    tis: c.tis,
    aggregation: c.aggregation,
    ratioMetric: 'gspo_ratio',
    clipMetric: 'gspo_clip_frac',
  });
}
