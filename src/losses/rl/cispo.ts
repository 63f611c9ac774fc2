/**
 * CISPO: the clipped ratio is a stop-gradient WEIGHT on the log-probability rather than the
 * thing being clipped out of the gradient, so clipped tokens still contribute (with a capped
 * weight):  rc = clamp(exp(clamp(lp - old, ±cap)), 1 - ε_low, 1 + ε_high);
 * loss = -Σ sg(rc)·lp·A·w·mask, d/dlp = -rc·A·w·mask.
 */
import { z } from 'zod';
import { parseConfig } from '../config.js';
import type { LossFn } from '../types.js';
import { type KernelContext, type PolicyKernel, policyBaseSchema, policyLoss } from './common.js';
import { SAFETY_CLAMP } from './tis.js';

function cispoKernel(lo: number, hi: number, cap: number): PolicyKernel {
  return ({ lp, inputs, tis, partial, stats }: KernelContext) => {
    const { n, mask, adv, advStride, old } = inputs;
    let total = 0;
    for (let j = 0; j < n; j++) {
      const m = mask[j]!;
      if (m === 0) continue;
      const a = adv[j * advStride]!;
      const d = lp[j]! - old[j]!;
      const dc = d < -cap ? -cap : Math.min(d, cap);
      const r = Math.exp(dc);
      const rc = r < lo ? lo : Math.min(r, hi);
      const coef = -rc * a * tis[j]!;
      total += coef * lp[j]! * m;
      partial[j] = coef * m;
      if (m > 0.5) {
        stats.ratioSum += r;
        if (rc !== r) stats.clipped++;
        stats.ppoKlSum += r - dc - 1;
      }
    }
    return total;
  };
}

export const cispoConfigSchema = z
  .strictObject({
    epsLow: z.number().min(0).max(1).default(0.2),
    epsHigh: z.number().min(0).default(0.28),
    ratioLogCap: z.number().min(0).default(SAFETY_CLAMP),
    ...policyBaseSchema,
  })
  .readonly();

export type CispoConfig = z.input<typeof cispoConfigSchema>;

export function cispoLoss(config: CispoConfig = {}): LossFn {
  const c = parseConfig('CISPO', cispoConfigSchema, config);
  return policyLoss({
    label: 'CISPO',
    kernel: cispoKernel(1 - c.epsLow, 1 + c.epsHigh, c.ratioLogCap),
    tis: c.tis,
    aggregation: c.aggregation,
    ratioMetric: 'ppo_ratio',
    clipMetric: 'cispo_clip_frac',
  });
}
