// The autodiff on its own: every op's value and its gradient against central finite
// differences (float64), broadcasting, PyTorch's subgradients, backward semantics and errors.
import { describe, expect, it } from 'vitest';
import {
  abs,
  add,
  addAll,
  backward,
  clamp,
  clippedSurrogate,
  concat,
  constant,
  detach,
  div,
  dot,
  exp,
  expDiff,
  expm1,
  gradients,
  k3,
  LossError,
  log,
  log1mexp,
  log1p,
  logsigmoid,
  maximum,
  mean,
  minimum,
  mul,
  neg,
  param,
  slice,
  square,
  sub,
  sum,
  type Vector,
  where,
} from '../../src/losses/index.js';
import { rng, uniform } from './helpers.js';

/** Checks d(sum(f(x)·c))/dx against finite differences, with a random cotangent c. */
function gradcheck(f: (x: Vector) => Vector, x0: Float64Array, seed = 1): void {
  const r = rng(seed);
  const probe = (x: Float64Array) => {
    const y = f(constant(x));
    return y;
  };
  const outLen = probe(x0).length;
  const c = uniform(r, outLen, -1, 1);
  const scalarOf = (x: Float64Array) => dot(probe(x), c).item();
  const leaf = param(x0.slice());
  const [g] = gradients(dot(f(leaf), c), [leaf]);
  const h = 1e-6;
  for (let j = 0; j < x0.length; j++) {
    const p = x0.slice();
    const m = x0.slice();
    p[j]! += h;
    m[j]! -= h;
    const numeric = (scalarOf(p) - scalarOf(m)) / (2 * h);
    expect(Math.abs(g![j]! - numeric)).toBeLessThan(1e-6 * (1 + Math.abs(numeric)));
  }
}

const r = rng(7);
const xs = uniform(r, 9, -2, 2);
const pos = uniform(r, 9, 0.2, 3);
const negs = uniform(r, 9, -4, -0.05);
const other = uniform(r, 9, -2, 2);

describe('elementwise ops', () => {
  it('compute values like Math', () => {
    const x = constant([0.5, -1]);
    expect(add(x, 2).toArray()).toEqual([2.5, 1]);
    expect(sub(1, x).toArray()).toEqual([0.5, 2]);
    expect(mul(x, [2, 3]).toArray()).toEqual([1, -3]);
    expect(div(x, 2).toArray()).toEqual([0.25, -0.5]);
    expect(neg(x).toArray()).toEqual([-0.5, 1]);
    expect(exp(x).toArray()).toEqual([Math.exp(0.5), Math.exp(-1)]);
    expect(log1p(constant([1e-20])).item()).toBe(1e-20);
    expect(expm1(constant([1e-20])).item()).toBe(1e-20);
    expect(square(x).toArray()).toEqual([0.25, 1]);
    expect(abs(x).toArray()).toEqual([0.5, 1]);
  });

  it.each([
    ['add', (x: Vector) => add(x, other)],
    ['add broadcast', (x: Vector) => add(x, 3)],
    ['sub', (x: Vector) => sub(other, x)],
    ['mul', (x: Vector) => mul(x, other)],
    ['mul self', (x: Vector) => mul(x, x)],
    ['div numerator', (x: Vector) => div(x, pos)],
    ['neg', (x: Vector) => neg(x)],
    ['exp', (x: Vector) => exp(x)],
    ['square', (x: Vector) => square(x)],
    ['abs', (x: Vector) => abs(x)],
    ['logsigmoid', (x: Vector) => logsigmoid(mul(x, 10))],
    ['clamp', (x: Vector) => clamp(x, -1, 1)],
    ['minimum', (x: Vector) => minimum(x, other)],
    ['maximum', (x: Vector) => maximum(x, other)],
    ['where', (x: Vector) => where([1, 0, 1, 0, 1, 0, 1, 0, 1], x, mul(x, 2))],
    ['slice', (x: Vector) => slice(x, 2, -3)],
    ['concat', (x: Vector) => concat([slice(x, 4), x])],
    ['sum', (x: Vector) => sum(x)],
    ['mean', (x: Vector) => mean(x)],
    ['dot', (x: Vector) => dot(x, x)],
    ['addAll', (x: Vector) => addAll([x, x, 1])],
    ['expDiff', (x: Vector) => expDiff(x, other, 1)],
    ['k3', (x: Vector) => k3(x, other)],
    ['clippedSurrogate', (x: Vector) => clippedSurrogate(exp(x), other, 0.8, 1.2)],
  ])('%s: gradient matches finite differences', (_name, f) => gradcheck(f, xs));

  it.each([
    ['log', (x: Vector) => log(x)],
    ['log1p', (x: Vector) => log1p(x)],
    ['div denominator', (x: Vector) => div(other, x)],
  ])('%s: gradient matches finite differences on x > 0', (_name, f) => gradcheck(f, pos));

  it.each([
    ['expm1', (x: Vector) => expm1(x)],
    ['log1mexp', (x: Vector) => log1mexp(x)],
  ])('%s: gradient matches finite differences on x < 0', (_name, f) => gradcheck(f, negs));

  it('log1mexp is accurate on both branches', () => {
    const v = log1mexp(constant([-1e-10, -0.5, -1, -40])).toArray();
    expect(v[0]).toBeCloseTo(Math.log(1e-10), 8);
    expect(v[1]).toBeCloseTo(Math.log(1 - Math.exp(-0.5)), 14);
    expect(v[2]).toBeCloseTo(Math.log(1 - Math.exp(-1)), 14);
    expect(v[3]).toBe(-Math.exp(-40)); // log1p(-e^-40) ≈ -e^-40, where log(1 - e^-40) would be 0
  });

  it('logsigmoid is finite for large |x|', () => {
    const v = logsigmoid(constant([-800, 800])).toArray();
    expect(v[0]).toBe(-800);
    expect(v[1]).toBe(0);
    const x = param([-800, 800]);
    expect(Array.from(gradients(sum(logsigmoid(x)), [x])[0]!)).toEqual([1, 0]);
  });
});

describe("PyTorch's subgradients", () => {
  it('clamp passes the gradient at the bounds, not beyond', () => {
    const x = param([-2, -1, 0, 1, 2]);
    expect(Array.from(gradients(sum(clamp(x, -1, 1)), [x])[0]!)).toEqual([0, 1, 1, 1, 0]);
  });
  it('minimum and maximum split ties in half', () => {
    const x = param([1, 2, 3]);
    const y = param([1, 1, 4]);
    const [gx, gy] = gradients(sum(maximum(x, y)), [x, y]);
    expect(Array.from(gx!)).toEqual([0.5, 1, 0]);
    expect(Array.from(gy!)).toEqual([0.5, 0, 1]);
  });
  it('detach stops the gradient', () => {
    const x = param([1, 2]);
    expect(Array.from(gradients(sum(mul(x, detach(x))), [x])[0]!)).toEqual([1, 2]);
  });
});

describe('broadcasting and graph', () => {
  it('sums the gradient of a broadcast scalar', () => {
    const s = param([2]);
    const v = param([1, 2, 3]);
    const [gs, gv] = gradients(sum(mul(v, s)), [s, v]);
    expect(Array.from(gs!)).toEqual([6]);
    expect(Array.from(gv!)).toEqual([2, 2, 2]);
  });

  it('rejects mismatched lengths', () => {
    expect(() => add(constant([1, 2]), constant([1, 2, 3]))).toThrow(LossError);
    expect(() => dot(constant([1, 2]), constant([1]))).toThrow(/lengths must match/);
  });

  it('folds constants: ops on constants build no graph', () => {
    const y = exp(add(constant([1, 2]), 1));
    expect(y.requiresGrad).toBe(false);
    expect(y.inputs).toHaveLength(0);
  });

  it('accumulates into leaves across backward calls, like torch', () => {
    const x = param([3]);
    const loss = mul(x, x);
    backward(loss);
    backward(loss);
    expect(x.grad![0]).toBe(12);
    // gradients() starts from zero.
    expect(gradients(loss, [x])[0]![0]).toBe(6);
  });

  it('gives zero gradients to unused inputs', () => {
    const x = param([1, 2]);
    const y = param([5]);
    expect(Array.from(gradients(sum(x), [x, y])[1]!)).toEqual([0]);
  });

  it('handles long chains without recursion', () => {
    const x = param([1]);
    let acc: Vector = x;
    for (let i = 0; i < 50_000; i++) acc = add(acc, x);
    expect(gradients(acc, [x])[0]![0]).toBe(50_001);
  });

  it('backward needs a scalar', () => {
    expect(() => backward(param([1, 2]))).toThrow(/scalar loss/);
    expect(() => param([1, 2]).item()).toThrow(/length-1/);
  });

  it('reuses a Float64Array leaf without copying', () => {
    const values = Float64Array.of(1, 2);
    expect(param(values).value).toBe(values);
  });
});
