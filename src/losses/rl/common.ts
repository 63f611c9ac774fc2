/**
 * What every client-side policy loss shares: reading a datum's rollout inputs, the TIS
 * weights, the batch metrics (ppo_kl, ref_kld, ratio mean, clip fraction), aggregation, and
 * turning per-datum token kernels into one autodiff node.
 *
 * A datum of a recipe loss carries, in target coordinates:
 *   weights (or mask)  per-token loss mask; active where > 0.5, losses multiply by its value
 *   advantages         one per-sequence value, or one per token
 *   logprobs           rollout (sampling) logprobs — required
 *   old_logprobs       old-policy forward pass; defaults to the rollout logprobs
 *   ref_logprobs       reference model, for the KL penalty and ref_kld
 * Each loss is a raw SUM over active tokens of all datums unless an aggregation is chosen.
 */
import { z } from 'zod';
import { fusedScalar } from '../autodiff/fused.js';
import type { Vector } from '../autodiff/vector.js';
import {
  assertFinite,
  FIELDS,
  type LossDatum,
  readFloats,
  readMask,
  readTensor,
} from '../datum.js';
import { LossError } from '../errors.js';
import { type Metrics, ratioOrZero } from '../metrics.js';
import type { LossFn } from '../types.js';
import { type TisConfig, TisStats, tisConfigSchema, tisMetrics, tisWeights } from './tis.js';

export const AGGREGATIONS = ['sum', 'token-mean', 'seq-mean-token-mean'] as const;
/**
 * sum: Σ over active tokens (normalise later with num_loss_tokens);
 * token-mean: that sum over the number of active tokens;
 * seq-mean-token-mean: each sequence's token mean, averaged over sequences.
 */
export type Aggregation = (typeof AGGREGATIONS)[number];

/** Config keys every policy loss accepts. `tis: null` turns TIS off. */
export const policyBaseSchema = {
  tis: tisConfigSchema.nullable().default({ cap: 5, level: 'token' }),
  aggregation: z.enum(AGGREGATIONS).default('sum'),
};

/** The rollout inputs of one datum, all of the logprob vector's length n. */
export interface PolicyInputs {
  readonly n: number;
  readonly mask: Float64Array;
  /** Advantages: read `adv[j * advStride]` (stride 0 for a per-sequence value). */
  readonly adv: Float64Array;
  readonly advStride: 0 | 1;
  readonly rollout: Float64Array;
  readonly old: Float64Array;
  readonly ref: Float64Array | undefined;
  /** Tokens with mask > 0.5. */
  readonly active: number;
}

export function readPolicyInputs(
  label: string,
  datum: LossDatum,
  index: number,
  n: number,
): PolicyInputs {
  const raw = readTensor(datum, FIELDS.logprobs, index);
  if (raw === undefined || (raw.data.length === 0 && n > 0)) {
    throw new LossError(
      'invalid_loss_input',
      `${label} requires rollout_logprobs for datum ${index}: loss_fn_inputs.logprobs is missing or empty; sample with logprobs enabled`,
      { datum: index, field: FIELDS.logprobs },
    );
  }
  const unchecked = { skipFiniteCheck: true };
  const rolloutLabel = 'rollout logprobs (loss_fn_inputs.logprobs)';
  const rollout = readFloats(datum, index, FIELDS.logprobs, n, {
    ...unchecked,
    label: rolloutLabel,
  })!;
  const mask = readMask(datum, index, n, label, unchecked);
  const adv = readFloats(datum, index, FIELDS.advantages, n, { allowScalar: true });
  if (adv === undefined) {
    throw new LossError(
      'invalid_loss_input',
      `datum ${index}: ${label} needs loss_fn_inputs.advantages (one value per sequence or per token)`,
      { datum: index, field: FIELDS.advantages },
    );
  }
  const old = readFloats(datum, index, FIELDS.oldLogprobs, n, unchecked) ?? rollout;
  const ref = readFloats(datum, index, FIELDS.refLogprobs, n, unchecked);
  // One pass checks all four token vectors and counts active tokens; only when something is
  // off does the per-field scan run, to name the culprit.
  const ref2 = ref ?? mask;
  let active = 0;
  let suspicious = false;
  for (let j = 0; j < n; j++) {
    const m = mask[j]!;
    const s = m + rollout[j]! + old[j]! + ref2[j]!;
    if (s - s !== 0) suspicious = true;
    if (m > 0.5) active++;
  }
  if (suspicious) {
    const maskField = readTensor(datum, FIELDS.weights, index) ? FIELDS.weights : FIELDS.mask;
    assertFinite(mask, index, `loss_fn_inputs.${maskField}`);
    assertFinite(rollout, index, rolloutLabel);
    assertFinite(old, index, `loss_fn_inputs.${FIELDS.oldLogprobs}`);
    if (ref) assertFinite(ref, index, `loss_fn_inputs.${FIELDS.refLogprobs}`);
    // All finite: the sum overflowed on huge values, which is not an input error.
  }
  return {
    n,
    mask,
    adv,
    advStride: adv.length === 1 && n !== 1 ? 0 : 1,
    rollout,
    old,
    ref,
    active,
  };
}

/** Batch sums behind the metrics; kernels add the terms they compute anyway. */
export class PolicyStats {
  activeTokens = 0;
  /** Datums with at least one active token. */
  sequences = 0;
  /** Σ k3(lp - old) over active tokens: the PPO KL between current and old policy. */
  ppoKlSum = 0;
  /** Σ of the importance ratio over active tokens. */
  ratioSum = 0;
  /** Active tokens whose ratio was clipped. */
  clipped = 0;
  /** Active tokens with a reference logprob, and their KL sums. */
  refTokens = 0;
  refKldSum = 0;
  refK1Sum = 0;
  /** Σ β·KL·mask: how much of the loss is the KL penalty. */
  klPenaltySum = 0;
  readonly tis = new TisStats();
}

/** One datum's work for a kernel: fill `partial` with d(datum loss)/d(lp), return the loss. */
export interface KernelContext {
  readonly lp: Float64Array;
  readonly inputs: PolicyInputs;
  /** TIS weights (1 where TIS is off or the token is masked). */
  readonly tis: Float64Array;
  readonly partial: Float64Array;
  readonly stats: PolicyStats;
}

export type PolicyKernel = (ctx: KernelContext) => number;

export interface PolicyLossSpec {
  /** Upper-case name used in messages: GRPO, DAPO, ... */
  readonly label: string;
  readonly kernel: PolicyKernel;
  readonly tis: TisConfig | null;
  readonly aggregation: Aggregation;
  /** Metric name of the ratio mean (`ppo_ratio`, `is_ratio`), or null when there is none. */
  readonly ratioMetric: string | null;
  /** Metric name of the clip fraction (`ppo_clip_frac`, ...), or null. */
  readonly clipMetric: string | null;
  /** The kernel adds ref_kld itself (it computes the reference KL for the loss anyway). */
  readonly kernelComputesRef?: boolean;
}

const clampLog = (d: number) => (d < -20 ? -20 : Math.min(d, 20));

/** ref_kld (k3) and k1 of the reference over active tokens, for losses without a KL term. */
function observeRef(lp: Float64Array, inputs: PolicyInputs, stats: PolicyStats): void {
  const { ref, mask, n } = inputs;
  if (ref === undefined) return;
  for (let j = 0; j < n; j++) {
    if (!(mask[j]! > 0.5)) continue;
    const y = ref[j]! - lp[j]!;
    stats.refKldSum += Math.exp(y) - y - 1;
    stats.refK1Sum -= y;
    stats.refTokens++;
  }
}

/** Adds k3(lp - old) of every active token to ppo_kl, for kernels with no ratio to old. */
export function observePpoKl(lp: Float64Array, inputs: PolicyInputs, stats: PolicyStats): void {
  const { old, mask, n } = inputs;
  for (let j = 0; j < n; j++) {
    if (!(mask[j]! > 0.5)) continue;
    const d = clampLog(lp[j]! - old[j]!);
    stats.ppoKlSum += Math.exp(d) - d - 1;
  }
}

/** Builds the LossFn: per-datum kernels, aggregation, one fused node, metrics. */
export function policyLoss(spec: PolicyLossSpec): LossFn {
  return (data, logprobs) => {
    if (data.length !== logprobs.length) {
      throw new LossError(
        'invalid_loss_input',
        `${spec.label}: ${data.length} datums but ${logprobs.length} logprob vectors`,
      );
    }
    const stats = new PolicyStats();
    const values = new Float64Array(data.length);
    const actives = new Float64Array(data.length);
    const partials: (Float64Array | null)[] = [];
    // Per-datum TIS weights and partials are views into two batch buffers: one allocation
    // each instead of one per datum.
    let tokens = 0;
    for (const lp of logprobs) tokens += lp.length;
    const tisBuffer = new Float64Array(tokens);
    const partialBuffer = new Float64Array(tokens);
    if (!spec.tis) tisBuffer.fill(1);
    let offset = 0;
    for (let i = 0; i < data.length; i++) {
      const lp = logprobs[i]!.value;
      const inputs = readPolicyInputs(spec.label, data[i]!, i, lp.length);
      const end = offset + lp.length;
      const tis = tisBuffer.subarray(offset, end);
      if (spec.tis) tisWeights(inputs.old, inputs.rollout, inputs.mask, spec.tis, stats.tis, tis);
      const partial = partialBuffer.subarray(offset, end);
      offset = end;
      values[i] = spec.kernel({ lp, inputs, tis, partial, stats });
      if (!spec.kernelComputesRef) observeRef(lp, inputs, stats);
      else if (inputs.ref !== undefined) stats.refTokens += inputs.active;
      stats.activeTokens += inputs.active;
      if (inputs.active > 0) stats.sequences++;
      actives[i] = inputs.active;
      partials.push(partial);
    }
    let rawSum = 0;
    for (let i = 0; i < values.length; i++) rawSum += values[i]!;
    const total = aggregate(spec.aggregation, values, actives, partials, stats);
    return {
      loss: fusedScalar(logprobs as Vector[], total, partials),
      metrics: policyMetrics(spec, stats, rawSum, total),
    };
  };
}

/**
 * Applies the aggregation to the datum losses and scales their partials in place.
 * Datums with no active token get weight 0 under the mean aggregations.
 */
function aggregate(
  aggregation: Aggregation,
  values: Float64Array,
  actives: Float64Array,
  partials: (Float64Array | null)[],
  stats: PolicyStats,
): number {
  if (aggregation === 'sum') {
    let s = 0;
    for (let i = 0; i < values.length; i++) s += values[i]!;
    return s;
  }
  let total = 0;
  for (let i = 0; i < values.length; i++) {
    let c = 0;
    if (aggregation === 'token-mean') c = ratioOrZero(1, stats.activeTokens);
    else if (actives[i]! > 0) c = 1 / (stats.sequences * actives[i]!);
    total += c * values[i]!;
    const p = partials[i];
    if (!p) continue;
    for (let j = 0; j < p.length; j++) p[j]! *= c;
  }
  return total;
}

function policyMetrics(
  spec: PolicyLossSpec,
  s: PolicyStats,
  rawSum: number,
  total: number,
): Metrics {
  const m: Metrics = {
    'loss:sum': rawSum,
    'active_tokens:sum': s.activeTokens,
    'sequences:sum': s.sequences,
    'ppo_kl:mean': ratioOrZero(s.ppoKlSum, s.activeTokens),
  };
  if (spec.aggregation !== 'sum') m['loss:mean'] = total;
  if (spec.ratioMetric) m[`${spec.ratioMetric}:mean`] = ratioOrZero(s.ratioSum, s.activeTokens);
  if (spec.clipMetric) m[`${spec.clipMetric}:mean`] = ratioOrZero(s.clipped, s.activeTokens);
  if (s.refTokens > 0) {
    m['ref_kld:mean'] = s.refKldSum / s.refTokens;
    m['ref_kl_k1:mean'] = s.refK1Sum / s.refTokens;
  }
  if (s.klPenaltySum !== 0) m['kl_penalty:sum'] = s.klPenaltySum;
  if (spec.tis) Object.assign(m, tisMetrics(spec.tis, s.tis));
  return m;
}
