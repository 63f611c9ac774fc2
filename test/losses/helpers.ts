// Shared test helpers: a seeded RNG, random rollout datums, and a float64 finite-difference
// gradient checker that runs any LossFn through forward / forwardBackward.
import { expect } from 'vitest';
import { forward, forwardBackward, type LossDatum, type LossFn } from '../../src/losses/index.js';

import { seededRandom as rng } from '../../src/util/seeded-random.js';

export { rng };

export function uniform(r: () => number, n: number, lo: number, hi: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

export interface RandomRolloutOptions {
  datums?: number;
  minLen?: number;
  maxLen?: number;
  /** Spread of lp - old; 0.5 puts some ratios inside and some outside the usual clips. */
  spread?: number;
  perTokenAdvantages?: boolean;
  withRef?: boolean;
  withOld?: boolean;
}

/** Random rollout datums and current logprobs, with a prompt prefix masked out. */
export function randomRollouts(
  seed: number,
  o: RandomRolloutOptions = {},
): { data: LossDatum[]; logprobs: Float64Array[] } {
  const r = rng(seed);
  const count = o.datums ?? 3;
  const spread = o.spread ?? 0.5;
  const data: LossDatum[] = [];
  const logprobs: Float64Array[] = [];
  for (let i = 0; i < count; i++) {
    const minLen = o.minLen ?? 4;
    const n = minLen + Math.floor(r() * ((o.maxLen ?? 8) - minLen + 1));
    const lp = uniform(r, n, -3, -0.05);
    const old = lp.map((v) => v + (r() - 0.5) * 2 * spread);
    const rollout = old.map((v) => v + (r() - 0.5) * 0.6);
    const ref = lp.map((v) => v + (r() - 0.5) * 0.8);
    const prompt = 1 + Math.floor(r() * 2);
    const weights = new Float64Array(n).map((_, j) => (j < prompt ? 0 : 1));
    const advantages = o.perTokenAdvantages
      ? uniform(r, n, -1.5, 1.5)
      : Float64Array.of((r() - 0.5) * 3);
    const inputs: Record<string, Float64Array | number[]> = {
      target_tokens: Array.from({ length: n }, (_, j) => 10 + j + i),
      weights,
      logprobs: rollout,
      advantages,
    };
    if (o.withOld !== false) inputs.old_logprobs = old;
    if (o.withRef) inputs.ref_logprobs = ref;
    data.push({
      model_input: Array.from({ length: n }, (_, j) => 9 + j + i),
      loss_fn_inputs: inputs,
    });
    logprobs.push(lp);
  }
  return { data, logprobs };
}

/**
 * Compares forwardBackward's gradients with central finite differences of forward(), in
 * float64, entry by entry. A loss with stop-gradients is differenced through `numericLoss`,
 * the same loss with its detached terms frozen at `logprobs`.
 */
export function expectGradientsMatch(
  lossFn: LossFn,
  data: readonly LossDatum[],
  logprobs: readonly Float64Array[],
  opts: { h?: number; tol?: number; numericLoss?: LossFn } = {},
): void {
  const h = opts.h ?? 1e-6;
  const tol = opts.tol ?? 1e-6;
  const numericLoss = opts.numericLoss ?? lossFn;
  const { grads } = forwardBackward(lossFn, data, logprobs);
  let checked = 0;
  for (let i = 0; i < logprobs.length; i++) {
    for (let j = 0; j < logprobs[i]!.length; j++) {
      const plus = logprobs.map((v) => v.slice());
      const minus = logprobs.map((v) => v.slice());
      plus[i]![j]! += h;
      minus[i]![j]! -= h;
      const numeric =
        (forward(numericLoss, data, plus).loss - forward(numericLoss, data, minus).loss) / (2 * h);
      const analytic = grads[i]![j]!;
      const err = Math.abs(numeric - analytic);
      if (err > tol * (1 + Math.abs(numeric))) {
        throw new Error(
          `grad mismatch at datum ${i} token ${j}: analytic ${analytic}, numeric ${numeric}`,
        );
      }
      checked++;
    }
  }
  expect(checked).toBeGreaterThan(0);
}

/** One-token datum for the spec's scalar vectors. */
export function tokenDatum(fields: {
  old?: number;
  inf: number;
  ref?: number;
  adv: number;
  mask?: number;
}): LossDatum {
  const inputs: Record<string, number[]> = {
    target_tokens: [1],
    weights: [fields.mask ?? 1],
    logprobs: [fields.inf],
    advantages: [fields.adv],
  };
  if (fields.old !== undefined) inputs.old_logprobs = [fields.old];
  if (fields.ref !== undefined) inputs.ref_logprobs = [fields.ref];
  return { loss_fn_inputs: inputs };
}

/** Relative closeness for values from the spec, given to ~8 significant digits. */
export function expectClose(actual: number, expected: number, rel = 1e-7): void {
  const err = Math.abs(actual - expected);
  if (err > rel * Math.max(1, Math.abs(expected))) {
    throw new Error(`expected ${expected}, got ${actual} (error ${err})`);
  }
}

export function expectAllClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel = 1e-7) {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) expectClose(actual[i]!, expected[i]!, rel);
}

/** Per-datum vectors equal entry by entry to `digits` places (toBeCloseTo), after scaling `actual`. */
export function expectVectorsClose(
  actual: readonly ArrayLike<number>[],
  expected: readonly ArrayLike<number>[],
  digits: number,
  scale = 1,
): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    expect(a.length).toBe(e.length);
    for (let j = 0; j < e.length; j++) expect(a[j]! * scale).toBeCloseTo(e[j]!, digits);
  }
}
