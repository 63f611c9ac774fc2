/**
 * KL estimators between the sampling policy π (logprob lp of each sampled token) and another
 * policy q (logprob `other`), from samples of π:
 *
 *   k1 = lp - other                                  unbiased, high variance, can be negative
 *   k3 = exp(other - lp) - (other - lp) - 1          unbiased, low variance, always >= 0
 *
 * `ref_kld` is k3 against the reference model (drift from the base; the one to watch);
 * `ppo_kl` is k3 between the current and the old policy, mean of exp(lp-old) - (lp-old) - 1,
 * which stays near 0 with one minibatch per rollout.
 */
import { LossError } from './errors.js';

export function klK1(lp: number, other: number): number {
  return lp - other;
}

export function klK3(lp: number, other: number): number {
  const d = other - lp;
  return Math.exp(d) - d - 1;
}

export type KlEstimator = 'k1' | 'k3';

/** Mean of an estimator over active tokens (mask > 0.5; all tokens without a mask). */
export function meanKl(
  estimator: KlEstimator,
  lp: ArrayLike<number>,
  other: ArrayLike<number>,
  mask?: ArrayLike<number>,
): number {
  if (other.length !== lp.length || (mask && mask.length !== lp.length)) {
    throw new LossError(
      'invalid_loss_input',
      `KL estimate needs aligned vectors: lp ${lp.length}, other ${other.length}, mask ${mask?.length ?? '-'}`,
    );
  }
  const f = estimator === 'k1' ? klK1 : klK3;
  let s = 0;
  let n = 0;
  for (let j = 0; j < lp.length; j++) {
    if (mask && !(mask[j]! > 0.5)) continue;
    s += f(lp[j]!, other[j]!);
    n++;
  }
  return n > 0 ? s / n : 0;
}

/** Mean k3 KL from the current policy to the reference over active tokens. */
export function refKld(
  lp: ArrayLike<number>,
  ref: ArrayLike<number>,
  mask?: ArrayLike<number>,
): number {
  return meanKl('k3', lp, ref, mask);
}

/** Mean of exp(lp - old) - (lp - old) - 1 over active tokens: PPO's current-vs-old KL. */
export function ppoKl(
  lp: ArrayLike<number>,
  old: ArrayLike<number>,
  mask?: ArrayLike<number>,
): number {
  // k3 with the roles swapped: the estimator's "other" is the current policy.
  return meanKl('k3', old, lp, mask);
}
