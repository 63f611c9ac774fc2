// Plain reference implementations of the policy losses, written line by line like the
// reference cookbook's torch code with the unfused autodiff ops. The fused kernels in
// src/losses must agree with these in value and gradient.
import {
  add,
  addAll,
  clamp,
  constant,
  detach,
  dot,
  exp,
  type LossDatum,
  maximum,
  mean,
  minimum,
  mul,
  neg,
  sub,
  type Vector,
  where,
} from '../../src/losses/index.js';

interface Row {
  mask: Float64Array;
  adv: Float64Array;
  rollout: Float64Array;
  old: Float64Array;
  ref: Float64Array | undefined;
}

const f64 = (x: unknown) => Float64Array.from(x as ArrayLike<number>);

function rowOf(d: LossDatum, n: number): Row {
  const i = d.loss_fn_inputs;
  const adv = f64(i.advantages);
  const rollout = f64(i.logprobs);
  return {
    mask: f64(i.weights ?? i.mask),
    adv: adv.length === 1 ? new Float64Array(n).fill(adv[0]!) : adv,
    rollout,
    old: i.old_logprobs ? f64(i.old_logprobs) : rollout,
    ref: i.ref_logprobs ? f64(i.ref_logprobs) : undefined,
  };
}

export interface RefTis {
  cap: number;
  level: 'token' | 'sequence';
  icepop?: number;
}

/** TIS weights straight from the spec's sentence, one token at a time. */
export function refTis(row: Row, tis: RefTis | null): Float64Array {
  const n = row.mask.length;
  const w = new Float64Array(n).fill(1);
  if (!tis) return w;
  const active: number[] = [];
  for (let j = 0; j < n; j++) if (row.mask[j]! > 0.5) active.push(j);
  const d = (j: number) => Math.min(20, Math.max(-20, row.old[j]! - row.rollout[j]!));
  if (tis.level === 'sequence') {
    if (active.length === 0) return w;
    const raw = Math.exp(active.reduce((s, j) => s + d(j), 0) / active.length);
    for (const j of active) w[j] = Math.min(raw, tis.cap);
    return w;
  }
  for (const j of active) {
    const raw = Math.exp(d(j));
    const keep = tis.icepop === undefined || (raw >= 1 / tis.icepop && raw <= tis.icepop);
    w[j] = keep ? Math.min(raw, tis.cap) : 0;
  }
  return w;
}

type PerToken = (lp: Vector, row: Row, w: Float64Array, i: number) => Vector;

function sumOver(
  data: readonly LossDatum[],
  lps: readonly Vector[],
  tis: RefTis | null,
  f: PerToken,
) {
  return addAll(
    lps.map((lp, i) => {
      const row = rowOf(data[i]!, lp.length);
      return dot(f(lp, row, refTis(row, tis), i), row.mask);
    }),
  );
}

/**
 * The stop-gradient operand: detach(lp), or — to finite-difference a loss with stop-gradients
 * — the logprobs it is frozen at, so only the differentiable path moves.
 */
function sg(lp: Vector, i: number, frozen: readonly Float64Array[] | undefined): Vector {
  return frozen ? constant(frozen[i]!) : detach(lp);
}

export function refPpoClip(
  data: readonly LossDatum[],
  lps: readonly Vector[],
  o: { lo: number; hi: number; beta: number; dualClip?: number; cap?: number; tis: RefTis | null },
): Vector {
  return sumOver(data, lps, o.tis, (lp, row, w) => {
    const cap = o.cap ?? 20;
    const ratio = exp(clamp(sub(lp, row.old), -cap, cap));
    const clipped = clamp(ratio, o.lo, o.hi);
    let s = maximum(mul(neg(ratio), row.adv), mul(neg(clipped), row.adv));
    if (o.dualClip !== undefined) {
      const lower = minimum(mul(row.adv, -o.dualClip), s);
      s = where(
        Array.from(row.adv, (a) => a < 0),
        lower,
        s,
      );
    }
    let per = mul(s, w);
    if (row.ref && o.beta > 0) {
      const y = sub(row.ref, lp);
      per = add(per, mul(sub(sub(exp(y), y), 1), o.beta));
    }
    return per;
  });
}

export function refGspo(
  data: readonly LossDatum[],
  lps: readonly Vector[],
  o: { lo: number; hi: number; cap: number; tis: RefTis | null },
  frozen?: readonly Float64Array[],
): Vector {
  return sumOver(data, lps, o.tis, (lp, row, w, i) => {
    const base = sg(lp, i, frozen);
    const activeIdx = Array.from(row.mask, (m, j) => (m > 0.5 ? j : -1)).filter((j) => j >= 0);
    const diffs = activeIdx.map((j) => base.value[j]! - row.old[j]!);
    const m = mean(diffs).item();
    const logS = clamp(add(sub(lp, base), m), undefined, o.cap);
    const s = exp(logS);
    const sc = clamp(s, o.lo, o.hi);
    return mul(maximum(mul(neg(s), row.adv), mul(neg(sc), row.adv)), w);
  });
}

export function refCispo(
  data: readonly LossDatum[],
  lps: readonly Vector[],
  o: { lo: number; hi: number; tis: RefTis | null },
  frozen?: readonly Float64Array[],
): Vector {
  return sumOver(data, lps, o.tis, (lp, row, w, i) => {
    const rc = detach(clamp(exp(clamp(sub(sg(lp, i, frozen), row.old), -20, 20)), o.lo, o.hi));
    return mul(neg(mul(mul(rc, lp), row.adv)), w);
  });
}

export function refDro(
  data: readonly LossDatum[],
  lps: readonly Vector[],
  o: { beta: number; tis: RefTis | null },
): Vector {
  return sumOver(data, lps, o.tis, (lp, row, w) => {
    const d = sub(lp, row.old);
    const quad = where(
      Array.from(row.adv, (a) => a !== 0),
      mul(d, d),
      0,
    );
    return neg(sub(mul(mul(lp, row.adv), w), mul(quad, 0.5 * o.beta)));
  });
}

export function refIs(
  data: readonly LossDatum[],
  lps: readonly Vector[],
  o: { tis: RefTis | null },
): Vector {
  return sumOver(data, lps, o.tis, (lp, row, w) =>
    mul(neg(mul(exp(clamp(sub(lp, row.old), -20, 20)), row.adv)), w),
  );
}

export function refReinforce(
  data: readonly LossDatum[],
  lps: readonly Vector[],
  o: { beta: number },
  frozen?: readonly Float64Array[],
): Vector {
  return sumOver(data, lps, null, (lp, row, _w, i) => {
    let per = neg(mul(exp(clamp(sub(lp, row.rollout), -20, 20)), row.adv));
    if (o.beta > 0 && row.ref) per = add(per, mul(sub(sg(lp, i, frozen), row.ref), o.beta));
    return per;
  });
}
