/**
 * Elementwise, reduction and shape operations of the autodiff. Binary and ternary ops
 * broadcast a length-1 vector (or a number) over the other operand. Subgradients follow
 * PyTorch, so a loss written here and the same loss written with torch agree on every token:
 * clamp passes the gradient where lo <= x <= hi (inclusive), minimum/maximum split it in
 * half on ties.
 */
import { configError, LossError } from '../errors.js';
import {
  accumulate,
  broadcastLength,
  lift,
  node,
  type Operand,
  scalar,
  stride,
  Vector,
} from './vector.js';

// ---------------------------------------------------------------------------------------
// Arithmetic
// ---------------------------------------------------------------------------------------

export function add(a: Operand, b: Operand): Vector {
  const x = lift(a);
  const y = lift(b);
  const n = broadcastLength('add', x, y);
  const xv = x.value;
  const yv = y.value;
  const sx = stride(x);
  const sy = stride(y);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = xv[i * sx]! + yv[i * sy]!;
  return node(out, [x, y], (g) => {
    accumulate(x, g, false);
    accumulate(y, g, false);
  });
}

export function sub(a: Operand, b: Operand): Vector {
  const x = lift(a);
  const y = lift(b);
  const n = broadcastLength('sub', x, y);
  const xv = x.value;
  const yv = y.value;
  const sx = stride(x);
  const sy = stride(y);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = xv[i * sx]! - yv[i * sy]!;
  return node(out, [x, y], (g) => {
    accumulate(x, g, false);
    if (y.requiresGrad) {
      const gy = new Float64Array(n);
      for (let i = 0; i < n; i++) gy[i] = -g[i]!;
      accumulate(y, gy);
    }
  });
}

export function mul(a: Operand, b: Operand): Vector {
  const x = lift(a);
  const y = lift(b);
  const n = broadcastLength('mul', x, y);
  const xv = x.value;
  const yv = y.value;
  const sx = stride(x);
  const sy = stride(y);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = xv[i * sx]! * yv[i * sy]!;
  return node(out, [x, y], (g) => {
    if (x.requiresGrad) {
      const gx = new Float64Array(n);
      for (let i = 0; i < n; i++) gx[i] = g[i]! * yv[i * sy]!;
      accumulate(x, gx);
    }
    if (y.requiresGrad) {
      const gy = new Float64Array(n);
      for (let i = 0; i < n; i++) gy[i] = g[i]! * xv[i * sx]!;
      accumulate(y, gy);
    }
  });
}

export function div(a: Operand, b: Operand): Vector {
  const x = lift(a);
  const y = lift(b);
  const n = broadcastLength('div', x, y);
  const xv = x.value;
  const yv = y.value;
  const sx = stride(x);
  const sy = stride(y);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = xv[i * sx]! / yv[i * sy]!;
  return node(out, [x, y], (g) => {
    if (x.requiresGrad) {
      const gx = new Float64Array(n);
      for (let i = 0; i < n; i++) gx[i] = g[i]! / yv[i * sy]!;
      accumulate(x, gx);
    }
    if (y.requiresGrad) {
      // d(x/y)/dy = -x/y² = -out/y
      const gy = new Float64Array(n);
      for (let i = 0; i < n; i++) gy[i] = (-g[i]! * out[i]!) / yv[i * sy]!;
      accumulate(y, gy);
    }
  });
}

/**
 * A unary elementwise op from its value and its derivative expressed through the input and
 * the output (exp's derivative is its output; log's is 1/x).
 */
function unary(
  x: Vector,
  f: (v: number) => number,
  df: (v: number, out: number) => number,
): Vector {
  const n = x.value.length;
  const xv = x.value;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = f(xv[i]!);
  return node(out, [x], (g) => {
    const gx = new Float64Array(n);
    for (let i = 0; i < n; i++) gx[i] = g[i]! * df(xv[i]!, out[i]!);
    accumulate(x, gx);
  });
}

export function neg(a: Operand): Vector {
  return unary(
    lift(a),
    (v) => -v,
    () => -1,
  );
}

export function exp(a: Operand): Vector {
  return unary(lift(a), Math.exp, (_v, out) => out);
}

export function log(a: Operand): Vector {
  return unary(lift(a), Math.log, (v) => 1 / v);
}

/** log(1 + x), exact for small x. */
export function log1p(a: Operand): Vector {
  return unary(lift(a), Math.log1p, (v) => 1 / (1 + v));
}

/** exp(x) - 1, exact for small x. */
export function expm1(a: Operand): Vector {
  return unary(lift(a), Math.expm1, (_v, out) => out + 1);
}

export function square(a: Operand): Vector {
  return unary(
    lift(a),
    (v) => v * v,
    (v) => 2 * v,
  );
}

/** |x|, with subgradient 0 at 0 (as torch.abs). */
export function abs(a: Operand): Vector {
  return unary(lift(a), Math.abs, (v) => (v > 0 ? 1 : v < 0 ? -1 : 0));
}

/**
 * log σ(x) = min(x, 0) - log1p(exp(-|x|)), finite for every finite x. Its derivative
 * σ(-x) is computed from e^{-|x|} on the branch that cannot overflow.
 */
export function logsigmoid(a: Operand): Vector {
  return unary(
    lift(a),
    (v) => Math.min(v, 0) - Math.log1p(Math.exp(-Math.abs(v))),
    (v) => {
      const e = Math.exp(-Math.abs(v));
      return v >= 0 ? e / (1 + e) : 1 / (1 + e);
    },
  );
}

const NEG_LN2 = -Math.LN2;

/**
 * log(1 - eˣ) for x <= 0 (the log-probability of "not this"), with the two branches that keep
 * it accurate: log1p(-eˣ) when eˣ is small (x < -ln 2), log(-expm1(x)) when 1 - eˣ is small.
 * Derivative: -eˣ/(1 - eˣ) = -1/expm1(-x).
 */
export function log1mexp(a: Operand): Vector {
  return unary(
    lift(a),
    (v) => (v < NEG_LN2 ? Math.log1p(-Math.exp(v)) : Math.log(-Math.expm1(v))),
    (v) => -1 / Math.expm1(-v),
  );
}

// ---------------------------------------------------------------------------------------
// Clamping, selection, stop-gradient
// ---------------------------------------------------------------------------------------

/**
 * Clamps into [lo, hi] (either bound may be omitted). The gradient passes where
 * lo <= x <= hi, bounds included, and is zero outside — torch.clamp's subgradient.
 */
export function clamp(a: Operand, lo?: number, hi?: number): Vector {
  const x = lift(a);
  const low = lo ?? Number.NEGATIVE_INFINITY;
  const high = hi ?? Number.POSITIVE_INFINITY;
  if (!(low <= high)) throw configError(`clamp: lower bound ${lo} exceeds upper bound ${hi}`);
  const n = x.value.length;
  const xv = x.value;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const v = xv[i]!;
    out[i] = v < low ? low : Math.min(v, high);
  }
  return node(out, [x], (g) => {
    const gx = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const v = xv[i]!;
      gx[i] = v >= low && v <= high ? g[i]! : 0;
    }
    accumulate(x, gx);
  });
}

/** Shared body of minimum/maximum: `pickX(x, y)` says whether x wins; ties split the gradient. */
function select(op: string, a: Operand, b: Operand, pickX: (x: number, y: number) => boolean) {
  const x = lift(a);
  const y = lift(b);
  const n = broadcastLength(op, x, y);
  const xv = x.value;
  const yv = y.value;
  const sx = stride(x);
  const sy = stride(y);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u = xv[i * sx]!;
    const v = yv[i * sy]!;
    out[i] = pickX(u, v) ? u : v;
  }
  return node(out, [x, y], (g) => {
    const gx = new Float64Array(n);
    const gy = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const u = xv[i * sx]!;
      const v = yv[i * sy]!;
      if (u === v) {
        gx[i] = g[i]! / 2;
        gy[i] = g[i]! / 2;
      } else if (pickX(u, v)) gx[i] = g[i]!;
      else gy[i] = g[i]!;
    }
    accumulate(x, gx);
    accumulate(y, gy);
  });
}

export function minimum(a: Operand, b: Operand): Vector {
  return select('minimum', a, b, (u, v) => u < v);
}

export function maximum(a: Operand, b: Operand): Vector {
  return select('maximum', a, b, (u, v) => u > v);
}

/** Elementwise `cond ? a : b`; `cond` is data (booleans or numbers, non-zero is true). */
export function where(cond: ArrayLike<number | boolean> | boolean, a: Operand, b: Operand): Vector {
  const c = typeof cond === 'boolean' ? [cond] : cond;
  const x = lift(a);
  const y = lift(b);
  const n = broadcastLength('where', c, x, y);
  const sc = c.length === 1 ? 0 : 1;
  const xv = x.value;
  const yv = y.value;
  const sx = stride(x);
  const sy = stride(y);
  const take = new Uint8Array(n);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t = Boolean(c[i * sc]);
    take[i] = t ? 1 : 0;
    out[i] = t ? xv[i * sx]! : yv[i * sy]!;
  }
  return node(out, [x, y], (g) => {
    const gx = new Float64Array(n);
    const gy = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      if (take[i] === 1) gx[i] = g[i]!;
      else gy[i] = g[i]!;
    }
    accumulate(x, gx);
    accumulate(y, gy);
  });
}

/** The same values, cut off from the graph: torch's `.detach()`. */
export function detach(a: Operand): Vector {
  return new Vector(lift(a).value, false);
}

export const stopGradient = detach;

// ---------------------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------------------

export function sum(a: Operand): Vector {
  const x = lift(a);
  const xv = x.value;
  let s = 0;
  for (let i = 0; i < xv.length; i++) s += xv[i]!;
  return node(Float64Array.of(s), [x], (g) => {
    accumulate(x, new Float64Array(xv.length).fill(g[0]!));
  });
}

/** Mean of the values; the mean of an empty vector is 0 (it contributes nothing). */
export function mean(a: Operand): Vector {
  const x = lift(a);
  const n = x.value.length;
  if (n === 0) return scalar(0);
  return div(sum(x), n);
}

/** Σ aᵢ·bᵢ over equal-length vectors: the weighted sum of the seed's custom losses. */
export function dot(a: Operand, b: Operand): Vector {
  const x = lift(a);
  const y = lift(b);
  if (x.value.length !== y.value.length) {
    throw new LossError(
      'shape_mismatch',
      `dot: vectors of lengths ${x.value.length} and ${y.value.length}; lengths must match`,
    );
  }
  const xv = x.value;
  const yv = y.value;
  const n = xv.length;
  let s = 0;
  for (let i = 0; i < n; i++) s += xv[i]! * yv[i]!;
  return node(Float64Array.of(s), [x, y], (g) => {
    const g0 = g[0]!;
    if (x.requiresGrad) {
      const gx = new Float64Array(n);
      for (let i = 0; i < n; i++) gx[i] = g0 * yv[i]!;
      accumulate(x, gx);
    }
    if (y.requiresGrad) {
      const gy = new Float64Array(n);
      for (let i = 0; i < n; i++) gy[i] = g0 * xv[i]!;
      accumulate(y, gy);
    }
  });
}

/** Sum of many vectors of one length (or scalars) in a single node: Σ over datums. */
export function addAll(vs: readonly Operand[]): Vector {
  const xs = vs.map(lift);
  if (xs.length === 0) return scalar(0);
  const n = broadcastLength('addAll', ...xs);
  const out = new Float64Array(n);
  for (const x of xs) {
    const xv = x.value;
    const sx = stride(x);
    for (let i = 0; i < n; i++) out[i]! += xv[i * sx]!;
  }
  return node(out, xs, (g) => {
    for (const x of xs) accumulate(x, g, false);
  });
}

// ---------------------------------------------------------------------------------------
// Slicing and concatenation
// ---------------------------------------------------------------------------------------

/** Elements [start, end) with Array.prototype.slice semantics (negative counts from the end). */
export function slice(a: Operand, start = 0, end?: number): Vector {
  const x = lift(a);
  const len = x.value.length;
  const norm = (i: number) => (i < 0 ? Math.max(len + i, 0) : Math.min(i, len));
  const s = norm(start);
  const e = Math.max(s, norm(end ?? len));
  const out = x.value.slice(s, e);
  return node(out, [x], (g) => {
    const gx = new Float64Array(len);
    gx.set(g, s);
    accumulate(x, gx);
  });
}

export function concat(vs: readonly Operand[]): Vector {
  const xs = vs.map(lift);
  let n = 0;
  for (const x of xs) n += x.value.length;
  const out = new Float64Array(n);
  let offset = 0;
  for (const x of xs) {
    out.set(x.value, offset);
    offset += x.value.length;
  }
  return node(out, xs, (g) => {
    let o = 0;
    for (const x of xs) {
      const len = x.value.length;
      if (x.requiresGrad) accumulate(x, g.slice(o, o + len));
      o += len;
    }
  });
}
