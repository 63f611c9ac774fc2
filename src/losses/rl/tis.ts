/**
 * TIS — train/inference importance sampling. The sampler (quantised, differently parallel)
 * and the trainer disagree slightly on logprobs; weighting each token by
 * exp(old_policy - rollout) corrects the policy gradient for that gap. The weight is computed
 * over active tokens only (masked tool or bridge tokens would skew a sequence-level mean),
 * capped, and optionally "IcePop"-filtered: tokens whose raw ratio is outside
 * [1/threshold, threshold] are dropped entirely.
 */
import { z } from 'zod';
import { configError } from '../errors.js';

/** exp() arguments are clamped to ±20 so a single broken logprob cannot overflow a weight. */
export const SAFETY_CLAMP = 20;

export const tisConfigSchema = z
  .strictObject({
    /** Upper clamp of the weight. */
    cap: z.number().nonnegative().default(5),
    /** 'token': per-token weights; 'sequence': exp(mean log ratio) broadcast to every token. */
    level: z.enum(['token', 'sequence']).default('token'),
    /** Keep only tokens whose raw ratio is within [1/threshold, threshold] (token level). */
    icepopThreshold: z.number().min(1).optional(),
  })
  .refine((c) => c.icepopThreshold === undefined || c.level === 'token', {
    message: 'icepopThreshold is only supported for token-level TIS',
  });

export type TisConfigInput = z.input<typeof tisConfigSchema>;
export type TisConfig = z.output<typeof tisConfigSchema>;

/** Running sums for the TIS metrics over a batch (token-weighted over active tokens). */
export class TisStats {
  activeTokens = 0;
  weightSum = 0;
  clipped = 0;
  icepopDropped = 0;
  sequences = 0;
  seqRatioSum = 0;
}

const clampLog = (d: number) => (d < -SAFETY_CLAMP ? -SAFETY_CLAMP : Math.min(d, SAFETY_CLAMP));

/**
 * Per-token TIS weights of one datum: clamp(exp(clamp(old - rollout, ±20)), 0, cap) on active
 * tokens (mask > 0.5), 1 on the others. Updates `stats` when given; writes into `out` when
 * given (every entry is written).
 */
export function tisWeights(
  old: Float64Array,
  rollout: Float64Array,
  mask: Float64Array,
  config: TisConfig,
  stats?: TisStats,
  out?: Float64Array,
): Float64Array {
  const n = old.length;
  if (rollout.length !== n || mask.length !== n || (out && out.length !== n)) {
    throw configError(
      `TIS needs aligned inputs: old ${n}, rollout ${rollout.length}, mask ${mask.length}`,
    );
  }
  const w = out ?? new Float64Array(n);
  const { cap } = config;
  if (config.level === 'sequence') {
    w.fill(1);
    let sumLog = 0;
    let active = 0;
    for (let j = 0; j < n; j++) {
      if (mask[j]! > 0.5) {
        sumLog += clampLog(old[j]! - rollout[j]!);
        active++;
      }
    }
    if (active === 0) return w;
    const raw = Math.exp(sumLog / active);
    const weight = Math.min(raw, cap);
    for (let j = 0; j < n; j++) if (mask[j]! > 0.5) w[j] = weight;
    if (stats) {
      stats.activeTokens += active;
      stats.weightSum += weight * active;
      if (weight !== raw) stats.clipped += active;
      stats.sequences++;
      stats.seqRatioSum += raw;
    }
    return w;
  }
  const thr = config.icepopThreshold;
  const lo = thr === undefined ? 0 : 1 / thr;
  const hi = thr === undefined ? Number.POSITIVE_INFINITY : thr;
  // One pass writes every entry (1 where masked) and keeps the metric sums in locals.
  let active = 0;
  let weightSum = 0;
  let clipped = 0;
  let dropped = 0;
  for (let j = 0; j < n; j++) {
    if (!(mask[j]! > 0.5)) {
      w[j] = 1;
      continue;
    }
    const raw = Math.exp(clampLog(old[j]! - rollout[j]!));
    const capped = Math.min(raw, cap);
    const keep = raw >= lo && raw <= hi;
    const weight = keep ? capped : 0;
    w[j] = weight;
    active++;
    weightSum += weight;
    if (capped !== raw) clipped++;
    if (!keep) dropped++;
  }
  if (stats) {
    stats.activeTokens += active;
    stats.weightSum += weightSum;
    stats.clipped += clipped;
    stats.icepopDropped += dropped;
  }
  return w;
}

/** TIS metrics: weight mean, cap clip fraction, IcePop drop fraction, sequence ratio. */
export function tisMetrics(config: TisConfig, s: TisStats): Record<string, number> {
  const frac = (x: number) => (s.activeTokens > 0 ? x / s.activeTokens : 0);
  const m: Record<string, number> = {
    'tis/weight:mean': s.activeTokens > 0 ? s.weightSum / s.activeTokens : 1,
    'tis/clip_frac:mean': frac(s.clipped),
  };
  if (config.icepopThreshold !== undefined) m['tis/icepop_clip_frac:mean'] = frac(s.icepopDropped);
  if (config.level === 'sequence') {
    m['tis/seq_ratio:mean'] = s.sequences > 0 ? s.seqRatioSum / s.sequences : 1;
  }
  return m;
}
