/**
 * DRO: a linear policy-gradient term plus a smooth quadratic penalty keeping the policy near
 * the old one, instead of a hard clip. The penalty applies only where A ≠ 0 (tokens that carry
 * signal):  loss = -Σ (lp·A·w - ½·β·(lp - old)²·[A ≠ 0])·mask.
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

function droKernel(beta: number): PolicyKernel {
  return ({ lp, inputs, tis, partial, stats }: KernelContext) => {
    const { n, mask, adv, advStride, old } = inputs;
    let total = 0;
    let quad = 0;
    for (let j = 0; j < n; j++) {
      const m = mask[j]!;
      if (m === 0) continue;
      const a = adv[j * advStride]!;
      const w = tis[j]!;
      const d = a !== 0 ? lp[j]! - old[j]! : 0;
      const q = 0.5 * beta * d * d;
      total -= (lp[j]! * a * w - q) * m;
      partial[j] = -(a * w - beta * d) * m;
      quad += q * m;
    }
    stats.klPenaltySum += quad;
    observePpoKl(lp, inputs, stats);
    return total;
  };
}

export const droConfigSchema = z
  .strictObject({
    beta: z.number().min(0).default(0.05),
    ...policyBaseSchema,
  })
  .readonly();

export type DroConfig = z.input<typeof droConfigSchema>;

export function droLoss(config: DroConfig = {}): LossFn {
  const c = parseConfig('DRO', droConfigSchema, config);
  return policyLoss({
    label: 'DRO',
    kernel: droKernel(c.beta),
    tis: c.tis,
    aggregation: c.aggregation,
    ratioMetric: null,
    clipMetric: null,
  });
}
