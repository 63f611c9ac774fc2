/**
 * The PPO-clip family of client-side losses: GRPO and DAPO. Per active token, with
 * r = exp(clamp(lp - old, ±cap)) and w the TIS weight:
 *
 *   s = max(-r·A, -clamp(r, 1-ε, 1+ε_high)·A)          pessimistic clipped surrogate
 *   DAPO dual clip (c > 1, A < 0):  s = min(-c·A, s)    bounds the loss of a very bad token
 *   ℓ = s·w  (+ β·k3(ref - lp) for GRPO with a reference; the KL term is not TIS-weighted)
 *   loss = Σ ℓ·mask
 *
 * d(β·k3)/dlp = β·(1 - exp(ref - lp)).
 */
import { z } from 'zod';
import { parseConfig } from '../config.js';
import type { LossFn } from '../types.js';
import { type KernelContext, type PolicyKernel, policyBaseSchema, policyLoss } from './common.js';
import { SAFETY_CLAMP } from './tis.js';

interface ClipKernelOptions {
  lo: number;
  hi: number;
  /** Dual-clip constant c (> 1) for negative advantages, or undefined. */
  dualClip: number | undefined;
  klBeta: number;
  logCap: number;
}

/** Slots of the metric sums clipLoop returns through its `acc` argument. */
const ACC_RATIO = 0;
const ACC_CLIPPED = 1;
const ACC_PPO_KL = 2;
const ACC_REF_KLD = 3;
const ACC_REF_K1 = 4;
const ACC_PENALTY = 5;

/**
 * The token loop: surrogate, dual clip, TIS, KL, metrics and derivative in one pass. A plain
 * top-level function of typed arrays and numbers (no closure state, metric sums in locals):
 * V8 then compiles one tight loop, and compiles it the same way in every process. `dualClip`
 * is 0 when off; `ref` is null without a reference or without a KL.
 */
function clipLoop(
  lp: Float64Array,
  mask: Float64Array,
  adv: Float64Array,
  advStride: number,
  old: Float64Array,
  ref: Float64Array | null,
  tis: Float64Array,
  partial: Float64Array,
  lo: number,
  hi: number,
  cap: number,
  dualClip: number,
  klBeta: number,
  acc: Float64Array,
): number {
  const n = lp.length;
  let total = 0;
  let ratioSum = 0;
  let clipped = 0;
  let ppoKl = 0;
  let refKld = 0;
  let refK1 = 0;
  let penalty = 0;
  for (let j = 0; j < n; j++) {
    const m = mask[j]!;
    if (m === 0) continue;
    const a = adv[j * advStride]!;
    const lpj = lp[j]!;
    const d = lpj - old[j]!;
    const inside = d >= -cap && d <= cap;
    const dc = inside ? d : d < 0 ? -cap : cap;
    const r = Math.exp(dc);
    const rc = r < lo ? lo : Math.min(r, hi);
    const s1 = -r * a;
    const s2 = -rc * a;
    let s: number;
    let ds: number;
    if (s1 >= s2) {
      s = s1;
      ds = inside ? s1 : 0;
    } else {
      s = s2;
      ds = inside && r >= lo && r <= hi ? s1 : 0;
    }
    if (dualClip > 0 && a < 0 && -dualClip * a < s) {
      s = -dualClip * a;
      ds = 0;
    }
    const w = tis[j]!;
    let l = s * w;
    let dl = ds * w;
    const isActive = m > 0.5;
    if (ref !== null) {
      const y = ref[j]! - lpj;
      const e = Math.exp(y);
      const k = e - y - 1;
      l += klBeta * k;
      dl += klBeta * (1 - e);
      penalty += klBeta * k * m;
      if (isActive) {
        refKld += k;
        refK1 -= y;
      }
    }
    total += l * m;
    partial[j] = dl * m;
    if (isActive) {
      ratioSum += r;
      if (rc !== r) clipped++;
      ppoKl += r - dc - 1;
    }
  }
  acc[ACC_RATIO] = ratioSum;
  acc[ACC_CLIPPED] = clipped;
  acc[ACC_PPO_KL] = ppoKl;
  acc[ACC_REF_KLD] = refKld;
  acc[ACC_REF_K1] = refK1;
  acc[ACC_PENALTY] = penalty;
  return total;
}

function clipKernel(o: ClipKernelOptions): PolicyKernel {
  const { lo, hi, klBeta, logCap } = o;
  const dualClip = o.dualClip ?? 0;
  const acc = new Float64Array(6);
  return ({ lp, inputs, tis, partial, stats }: KernelContext) => {
    const ref = klBeta > 0 && inputs.ref !== undefined ? inputs.ref : null;
    const { mask, adv, advStride, old } = inputs;
    const total = clipLoop(
      lp,
      mask,
      adv,
      advStride,
      old,
      ref,
      tis,
      partial,
      lo,
      hi,
      logCap,
      dualClip,
      klBeta,
      acc,
    );
    stats.ratioSum += acc[ACC_RATIO]!;
    stats.clipped += acc[ACC_CLIPPED]!;
    stats.ppoKlSum += acc[ACC_PPO_KL]!;
    stats.refKldSum += acc[ACC_REF_KLD]!;
    stats.refK1Sum += acc[ACC_REF_K1]!;
    stats.klPenaltySum += acc[ACC_PENALTY]!;
    return total;
  };
}

export const grpoConfigSchema = z
  .strictObject({
    epsClip: z.number().min(0).max(1).default(0.2),
    /** Upper clip epsilon; defaults to epsClip (symmetric). */
    epsClipHigh: z.number().min(0).optional(),
    /** Coefficient of the k3 KL to the reference (applied where ref_logprobs are given). */
    klBeta: z.number().min(0).default(0.001),
    ...policyBaseSchema,
  })
  .readonly();

export type GrpoConfig = z.input<typeof grpoConfigSchema>;

/** GRPO: PPO-clipped surrogate with TIS weights and a k3 KL penalty to the reference. */
export function grpoLoss(config: GrpoConfig = {}): LossFn {
  const c = parseConfig('GRPO', grpoConfigSchema, config);
  const hi = 1 + (c.epsClipHigh ?? c.epsClip);
  return policyLoss({
    label: 'GRPO',
    kernel: clipKernel({
      lo: 1 - c.epsClip,
      hi,
      dualClip: undefined,
      klBeta: c.klBeta,
      logCap: SAFETY_CLAMP,
    }),
    tis: c.tis,
    aggregation: c.aggregation,
    ratioMetric: 'ppo_ratio',
    clipMetric: 'ppo_clip_frac',
    kernelComputesRef: c.klBeta > 0,
  });
}

export const dapoConfigSchema = z
  .strictObject({
    epsClip: z.number().min(0).max(1).default(0.2),
    epsClipHigh: z.number().min(0).default(0.28),
    /** Dual-clip constant for negative advantages; must exceed 1. */
    epsClipC: z.number().gt(1, { message: 'DAPO dual-clip epsClipC must be > 1' }).optional(),
    ratioLogCap: z.number().min(0).default(SAFETY_CLAMP),
    ...policyBaseSchema,
  })
  .readonly();

export type DapoConfig = z.input<typeof dapoConfigSchema>;

/** DAPO: asymmetric clip [1-ε, 1+ε_high], optional dual clip, no KL. */
export function dapoLoss(config: DapoConfig = {}): LossFn {
  const c = parseConfig('DAPO', dapoConfigSchema, config);
  return policyLoss({
    label: 'DAPO',
    kernel: clipKernel({
      lo: 1 - c.epsClip,
      hi: 1 + c.epsClipHigh,
      dualClip: c.epsClipC,
      klBeta: 0,
      logCap: c.ratioLogCap,
    }),
    tis: c.tis,
    aggregation: c.aggregation,
    ratioMetric: 'ppo_ratio',
    clipMetric: 'dapo_clip_frac',
  });
}
