/**
 * Fused operations: several elementwise steps in one pass and one node. They exist for
 * speed on long token vectors (one loop, one allocation, instead of five) and compute exactly
 * what the unfused composition computes — test/losses checks each against it.
 */
import { configError, LossError } from '../errors.js';
import {
  accumulate,
  broadcastLength,
  lift,
  node,
  type Operand,
  stride,
  type Vector,
} from './vector.js';

/**
 * exp(clamp(a - b, -cap, cap)): the importance ratio π/π_old from logprobs, with the log
 * ratio capped so one stale token cannot overflow the loss. Gradient flows where the log
 * ratio is inside [-cap, cap], bounds included.
 */
export function expDiff(a: Operand, b: Operand, cap = Number.POSITIVE_INFINITY): Vector {
  if (!(cap >= 0)) throw configError(`expDiff: cap must be >= 0, got ${cap}`);
  const x = lift(a);
  const y = lift(b);
  const n = broadcastLength('expDiff', x, y);
  const xv = x.value;
  const yv = y.value;
  const sx = stride(x);
  const sy = stride(y);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const d = xv[i * sx]! - yv[i * sy]!;
    out[i] = Math.exp(d < -cap ? -cap : Math.min(d, cap));
  }
  return node(out, [x, y], (g) => {
    const gx = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const d = xv[i * sx]! - yv[i * sy]!;
      gx[i] = d >= -cap && d <= cap ? g[i]! * out[i]! : 0;
    }
    if (y.requiresGrad) {
      const gy = new Float64Array(n);
      for (let i = 0; i < n; i++) gy[i] = -gx[i]!;
      accumulate(y, gy);
    }
    accumulate(x, gx);
  });
}

/**
 * The k3 KL estimator per token, k3 = exp(ref - lp) - (ref - lp) - 1: non-negative, unbiased
 * for KL(π‖π_ref) under samples from π. d/dlp = 1 - exp(ref - lp).
 */
export function k3(lp: Operand, ref: Operand): Vector {
  const x = lift(lp);
  const y = lift(ref);
  const n = broadcastLength('k3', x, y);
  const xv = x.value;
  const yv = y.value;
  const sx = stride(x);
  const sy = stride(y);
  const out = new Float64Array(n);
  const e = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const d = yv[i * sy]! - xv[i * sx]!;
    const ed = Math.exp(d);
    e[i] = ed;
    out[i] = ed - d - 1;
  }
  return node(out, [x, y], (g) => {
    const gx = new Float64Array(n);
    for (let i = 0; i < n; i++) gx[i] = g[i]! * (1 - e[i]!);
    if (y.requiresGrad) {
      const gy = new Float64Array(n);
      for (let i = 0; i < n; i++) gy[i] = -gx[i]!;
      accumulate(y, gy);
    }
    accumulate(x, gx);
  });
}

/**
 * PPO's clipped surrogate per token, max(-r·A, -clamp(r, lo, hi)·A): the pessimistic of the
 * unclipped and clipped objectives, as a loss. `adv` is data (no gradient flows to it).
 * When the unclipped branch wins the gradient is -A; when the clipped one wins it is -A inside
 * [lo, hi] and 0 outside — the gradient of torch.maximum over torch.clamp, ties included
 * (a tie means r is inside the range or A = 0, where both branches agree).
 */
export function clippedSurrogate(ratio: Operand, adv: Operand, lo: number, hi: number): Vector {
  if (!(lo <= hi)) throw configError(`clippedSurrogate: lo ${lo} exceeds hi ${hi}`);
  const r = lift(ratio);
  const a = lift(adv);
  const n = broadcastLength('clippedSurrogate', r, a);
  const rv = r.value;
  const av = a.value;
  const sr = stride(r);
  const sa = stride(a);
  const out = new Float64Array(n);
  const slope = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const ri = rv[i * sr]!;
    const ai = av[i * sa]!;
    const rc = ri < lo ? lo : Math.min(ri, hi);
    const s1 = -ri * ai;
    const s2 = -rc * ai;
    if (s1 >= s2) {
      out[i] = s1;
      slope[i] = -ai;
    } else {
      out[i] = s2;
      slope[i] = ri >= lo && ri <= hi ? -ai : 0;
    }
  }
  return node(out, [r], (g) => {
    const gr = new Float64Array(n);
    for (let i = 0; i < n; i++) gr[i] = g[i]! * slope[i]!;
    accumulate(r, gr);
  });
}

/**
 * A scalar whose value and partial derivatives were computed together by a fused kernel:
 * d(value)/d(inputs[i]) = partials[i]. This is how the per-token policy losses enter the
 * graph — one loop over the tokens computes each token's loss and its derivative, and the
 * node only scales the stored partials at backward time. A null partial means "no
 * dependence" (an empty or fully masked datum).
 */
export function fusedScalar(
  inputs: readonly Vector[],
  value: number,
  partials: readonly (Float64Array | null)[],
): Vector {
  if (partials.length !== inputs.length) {
    throw new LossError(
      'shape_mismatch',
      `fusedScalar: ${inputs.length} inputs but ${partials.length} partials`,
    );
  }
  for (let k = 0; k < inputs.length; k++) {
    const p = partials[k];
    if (p && p.length !== inputs[k]!.value.length) {
      throw new LossError(
        'shape_mismatch',
        `fusedScalar: input ${k} has ${inputs[k]!.value.length} values but its partials ${p.length}`,
      );
    }
  }
  return node(Float64Array.of(value), inputs, (g) => {
    const g0 = g[0]!;
    // Fresh gradients for all inputs come out of one allocation: a batch of 64 datums costs
    // one buffer instead of 64 (small typed arrays are expensive to create in V8).
    let fresh = 0;
    for (let k = 0; k < inputs.length; k++) {
      const p = partials[k];
      if (p && inputs[k]!.requiresGrad && inputs[k]!.grad === null) fresh += p.length;
    }
    const buffer = new Float64Array(fresh);
    let offset = 0;
    for (let k = 0; k < inputs.length; k++) {
      const x = inputs[k]!;
      const p = partials[k];
      if (!p || !x.requiresGrad) continue;
      if (x.grad === null) {
        const gx = buffer.subarray(offset, offset + p.length);
        offset += p.length;
        if (g0 === 1) gx.set(p);
        else for (let i = 0; i < p.length; i++) gx[i] = g0 * p[i]!;
        x.grad = gx;
        continue;
      }
      const gx = x.grad;
      for (let i = 0; i < p.length; i++) gx[i]! += g0 * p[i]!;
    }
  });
}
