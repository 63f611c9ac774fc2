/**
 * Advantage estimators.
 *
 * GRPO group z-score: rollouts of one prompt form a group; A_i = (R_i - μ)/(σ + 1e-8) with σ
 * the unbiased std (σ < 1e-8 → 1, so a uniform group gives zeros, never NaN). Groups of one
 * say nothing relative and are dropped; uniform groups carry no signal and managed RFT drops
 * them (at group level and within each chunk's batch) rather than replacing them.
 *
 * IGPO turn advantages: information gain and outcome rewards are z-normalised separately
 * (population std) over the group's turns that have them, summed per turn, and discounted
 * backwards.
 *
 * KL-shaped advantages: a reference-KL penalty injected into the advantages instead of the
 * loss, centred on the batch mean: A_t += β·mask_t·(mean_diff - diff_t), diff = sampling - ref.
 */
import { configError, inputError, LossError } from './errors.js';

export const GROUP_STD_FLOOR = 1e-8;
export const GROUP_EPSILON = 1e-8;

/** Z-scores of one group's rewards (unbiased std). A group of one gets [0]. */
export function groupZScores(rewards: readonly number[]): number[] {
  const n = rewards.length;
  for (const r of rewards) {
    if (!Number.isFinite(r)) throw configError(`rewards must be finite, got ${r}`);
  }
  if (n === 0) return [];
  if (n === 1) return [0];
  let mu = 0;
  for (const r of rewards) mu += r;
  mu /= n;
  let ss = 0;
  for (const r of rewards) ss += (r - mu) * (r - mu);
  let sigma = Math.sqrt(ss / (n - 1));
  if (sigma < GROUP_STD_FLOOR) sigma = 1;
  return rewards.map((r) => (r - mu) / (sigma + GROUP_EPSILON));
}

/** True when every reward of the group is the same: the group teaches nothing. */
export function isUniformGroup(rewards: readonly number[]): boolean {
  return rewards.every((r) => r === rewards[0]);
}

export type DropReason = 'singleton' | 'uniform';

export interface GroupAdvantages {
  /** Indices (into the input groups) of the groups kept, in order. */
  kept: number[];
  /** Advantages of each kept group, parallel to `kept`. */
  advantages: number[][];
  dropped: { group: number; reason: DropReason }[];
}

/**
 * Advantages of a batch of groups (one reward list per prompt). Groups of size 1 are always
 * dropped; uniform groups are dropped unless `filterUniform` is false (then they get zeros).
 * Apply it to each chunk's groups to filter at chunk level as managed RFT does.
 */
export function computeGroupAdvantages(
  groups: readonly (readonly number[])[],
  options: { filterUniform?: boolean } = {},
): GroupAdvantages {
  const filterUniform = options.filterUniform ?? true;
  const out: GroupAdvantages = { kept: [], advantages: [], dropped: [] };
  groups.forEach((rewards, g) => {
    if (rewards.length < 2) out.dropped.push({ group: g, reason: 'singleton' });
    else if (filterUniform && isUniformGroup(rewards))
      out.dropped.push({ group: g, reason: 'uniform' });
    else {
      out.kept.push(g);
      out.advantages.push(groupZScores(rewards));
    }
  });
  return out;
}

/** Population z-scores; zeros when n <= 1 or σ < eps (IGPO's normaliser). */
function zPopulation(values: readonly number[], eps: number): number[] {
  const n = values.length;
  if (n <= 1) return values.map(() => 0);
  let mu = 0;
  for (const v of values) mu += v;
  mu /= n;
  let ss = 0;
  for (const v of values) ss += (v - mu) * (v - mu);
  const sigma = Math.sqrt(ss / n);
  if (sigma < eps) return values.map(() => 0);
  return values.map((v) => (v - mu) / (sigma + eps));
}

/** Z-scores of the present (non-null) entries of ragged rows; absent entries get 0. */
function zPresent(rows: readonly (readonly (number | null)[])[], eps: number): number[][] {
  const present: number[] = [];
  for (const row of rows) for (const v of row) if (v !== null) present.push(v);
  const z = zPopulation(present, eps);
  let k = 0;
  return rows.map((row) => row.map((v) => (v === null ? 0 : z[k++]!)));
}

/** A turn's reward of one kind, or null where the turn has none of that kind. */
export type TurnReward = number | null;

/**
 * IGPO per-turn advantages for a group. `ig[i][t]` is rollout i's information gain at turn t,
 * `outcome[i][t]` its environment reward; null (or a missing entry) means the turn has no
 * reward of that kind — in IGPO the last turn has no information gain and only the last turn
 * has an outcome. Each kind is z-normalised over the values that exist, never over padding:
 * padding zeros would shift every present value by the share of absent turns, so all last
 * turns would get a positive advantage and all earlier ones a negative one regardless of
 * their rewards. c_t is the sum of the turn's present z-scores; A_T = c_T, A_t = c_t + γ·A_{t+1}.
 */
export function igpoTurnAdvantages(
  ig: readonly (readonly TurnReward[])[],
  outcome: readonly (readonly TurnReward[])[],
  options: { gamma?: number; eps?: number } = {},
): number[][] {
  const gamma = options.gamma ?? 0.95;
  const eps = options.eps ?? 1e-6;
  if (outcome.length > ig.length) {
    throw configError(`IGPO: ${outcome.length} outcome rows for ${ig.length} rollouts`);
  }
  for (const rows of [ig, outcome]) {
    for (const row of rows) {
      for (const v of row) {
        if (v !== null && !Number.isFinite(v)) {
          throw configError(`IGPO rewards must be finite, got ${v}`);
        }
      }
    }
  }
  const zIg = zPresent(ig, eps);
  const zOut = zPresent(
    ig.map((turns, i) => turns.map((_, t) => outcome[i]?.[t] ?? null)),
    eps,
  );
  return ig.map((turns, i) => {
    const a = new Array<number>(turns.length).fill(0);
    for (let t = turns.length - 1; t >= 0; t--) {
      const c = zIg[i]![t]! + zOut[i]![t]!;
      a[t] = c + (t + 1 < turns.length ? gamma * a[t + 1]! : 0);
    }
    return a;
  });
}

/**
 * Broadcasts per-turn advantages to per-token advantages (target coordinates): turn k covers
 * target positions [spans[k].start, spans[k].end); tokens outside every turn get 0.
 */
export function turnAdvantagesToTokens(
  turnAdvantages: readonly number[],
  spans: readonly { start: number; end: number }[],
  length: number,
): Float64Array {
  if (spans.length !== turnAdvantages.length) {
    throw configError(`${turnAdvantages.length} turn advantages but ${spans.length} turn spans`);
  }
  const out = new Float64Array(length);
  spans.forEach(({ start, end }, k) => {
    if (
      !(
        Number.isInteger(start) &&
        Number.isInteger(end) &&
        0 <= start &&
        start <= end &&
        end <= length
      )
    ) {
      throw configError(`turn ${k} span [${start}, ${end}) is outside [0, ${length})`);
    }
    out.fill(turnAdvantages[k]!, start, end);
  });
  return out;
}

export interface KlShapingInput {
  /** Per-token advantages of each datum (a per-sequence advantage broadcast first). */
  advantages: readonly ArrayLike<number>[];
  /** Sampling logprobs of each datum. */
  sampling: readonly ArrayLike<number>[];
  /** Reference logprobs of each datum. */
  ref: readonly ArrayLike<number>[];
  masks: readonly ArrayLike<number>[];
  /** Penalty coefficient β. */
  coef: number;
  /** With γ > 0 each datum's penalty becomes its discounted future sum. */
  discount?: number;
}

/**
 * Advantage-shaped KL: returns new advantages A + β·mask·(mean_diff - diff) (optionally
 * discounted), and the batch mean k1 diff it centred on.
 */
export function klShapedAdvantages(input: KlShapingInput): {
  advantages: Float64Array[];
  meanDiff: number;
} {
  const { advantages, sampling, ref, masks, coef } = input;
  const gamma = input.discount ?? 0;
  if (!(coef >= 0)) throw configError(`KL shaping coefficient must be >= 0, got ${coef}`);
  const count = advantages.length;
  if (sampling.length !== count || ref.length !== count || masks.length !== count) {
    throw new LossError(
      'invalid_loss_input',
      `KL shaping needs parallel rows: ${count} advantages, ${sampling.length} sampling, ${ref.length} ref, ${masks.length} masks`,
    );
  }
  const diffs: Float64Array[] = [];
  let diffSum = 0;
  let maskSum = 0;
  for (let i = 0; i < count; i++) {
    const n = advantages[i]!.length;
    const rows = { sampling: sampling[i]!, ref_logprobs: ref[i]!, mask: masks[i]! };
    for (const [field, row] of Object.entries(rows)) {
      if (row.length !== n) {
        throw inputError(i, field, `${field} has ${row.length} values but advantages ${n}`);
      }
    }
    const d = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      const m = rows.mask[j]!;
      d[j] = (rows.sampling[j]! - rows.ref_logprobs[j]!) * m;
      diffSum += d[j]!;
      maskSum += m;
    }
    diffs.push(d);
  }
  const meanDiff = maskSum > 0 ? diffSum / maskSum : 0;
  const shaped = diffs.map((d, i) => {
    const mask = masks[i]!;
    const adv = advantages[i]!;
    const n = d.length;
    const penalty = new Float64Array(n);
    for (let j = 0; j < n; j++) penalty[j] = coef * mask[j]! * (meanDiff - d[j]!);
    if (gamma > 0) {
      for (let j = n - 2; j >= 0; j--) penalty[j]! += gamma * penalty[j + 1]!;
    }
    const out = new Float64Array(n);
    for (let j = 0; j < n; j++) out[j] = adv[j]! + penalty[j]!;
    return out;
  });
  return { advantages: shaped, meanDiff };
}
