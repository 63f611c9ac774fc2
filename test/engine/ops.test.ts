// The engine's operators one by one (src/engine/ops.ts: the native backend the model runs),
// each against a plain float64 reference written here from its definition: forward values,
// and backward passes against central finite differences of the reference (the gradient of
// L = Σ c·output for random c). Each must also be bitwise the same on 1 and 3 threads.
import { describe, expect, it } from 'vitest';
import { bf16ToF32, f32ToBf16 } from '../../src/engine/dtype.js';
import { engineOps } from '../../src/engine/ops.js';
import { rng, underKernelSet } from './helpers.js';

const ops = engineOps();

function randn(seed: number, n: number, scale = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-300));
}

/** ∂/∂x of Σ c·f(x) by central differences, f a float64 reference. */
function numericGrad(
  f: (x: Float64Array) => ArrayLike<number>,
  x: ArrayLike<number>,
  c: ArrayLike<number>,
) {
  const h = 1e-6;
  const at = Float64Array.from(x);
  const loss = () => {
    const y = f(at);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += c[i]! * y[i]!;
    return s;
  };
  return Float64Array.from(at, (xi, i) => {
    at[i] = xi + h;
    const up = loss();
    at[i] = xi - h;
    const down = loss();
    at[i] = xi;
    return (up - down) / (2 * h);
  });
}

// ---- references (float64, from the definitions)

function rmsnormRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  rows: number,
  dim: number,
  eps: number,
) {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < dim; j++) ss += x[r * dim + j]! ** 2;
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let j = 0; j < dim; j++) y[r * dim + j] = x[r * dim + j]! * inv * w[j]!;
  }
  return y;
}

function ropeTables(positions: number, hd: number, theta: number) {
  const half = hd / 2;
  const cos = new Float32Array(positions * half);
  const sin = new Float32Array(positions * half);
  for (let p = 0; p < positions; p++)
    for (let i = 0; i < half; i++) {
      const angle = p / theta ** ((2 * i) / hd);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  return { cos, sin };
}

// HF rotate_half: y = x·cos + rotate_half(x)·sin, rotate_half(x) = [−x2, x1].
function ropeRef(
  x: ArrayLike<number>,
  rows: number,
  heads: number,
  hd: number,
  pos: Int32Array,
  t: { cos: Float32Array; sin: Float32Array },
) {
  const half = hd / 2;
  const y = new Float64Array(rows * heads * hd);
  for (let r = 0; r < rows; r++)
    for (let h = 0; h < heads; h++) {
      const o = (r * heads + h) * hd;
      for (let i = 0; i < half; i++) {
        const c = t.cos[pos[r]! * half + i]!;
        const s = t.sin[pos[r]! * half + i]!;
        const x1 = x[o + i]!;
        const x2 = x[o + i + half]!;
        y[o + i] = x1 * c - x2 * s;
        y[o + i + half] = x2 * c + x1 * s;
      }
    }
  return y;
}

const silu = (g: number) => g / (1 + Math.exp(-g));

interface AttnShape {
  heads: number;
  kvHeads: number;
  headDim: number;
  seqLens: Int32Array;
}

function attentionRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  s: AttnShape,
) {
  const { heads, kvHeads, headDim: hd } = s;
  const rows = q.length / (heads * hd);
  const out = new Float64Array(rows * heads * hd);
  const lse = new Float64Array(rows * heads);
  const scale = 1 / Math.sqrt(hd);
  let off = 0;
  for (const n of s.seqLens) {
    for (let i = 0; i < n; i++)
      for (let h = 0; h < heads; h++) {
        const kh = Math.floor(h / (heads / kvHeads));
        const qo = ((off + i) * heads + h) * hd;
        const scores: number[] = [];
        for (let j = 0; j <= i; j++) {
          const ko = ((off + j) * kvHeads + kh) * hd;
          let d = 0;
          for (let e = 0; e < hd; e++) d += q[qo + e]! * k[ko + e]!;
          scores.push(d * scale);
        }
        const mx = Math.max(...scores);
        const sum = scores.reduce((a, x) => a + Math.exp(x - mx), 0);
        lse[(off + i) * heads + h] = mx + Math.log(sum);
        for (let j = 0; j <= i; j++) {
          const p = Math.exp(scores[j]! - mx) / sum;
          const vo = ((off + j) * kvHeads + kh) * hd;
          for (let e = 0; e < hd; e++) out[qo + e]! += p * v[vo + e]!;
        }
      }
    off += n;
  }
  return { out, lse };
}

function crossEntropyRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  targets: Int32Array,
  vocab: number,
  dim: number,
) {
  const rows = targets.length;
  const logprobs = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const z = new Float64Array(vocab);
    for (let v = 0; v < vocab; v++) {
      let d = 0;
      for (let j = 0; j < dim; j++) d += x[r * dim + j]! * w[v * dim + j]!;
      z[v] = d;
    }
    let mx = -Infinity;
    for (const zi of z) mx = Math.max(mx, zi);
    let sum = 0;
    for (const zi of z) sum += Math.exp(zi - mx);
    logprobs[r] = z[targets[r]!]! - (mx + Math.log(sum));
  }
  return logprobs;
}

// ---- tests

describe('engine operators against plain references', () => {
  it(`runs on the ${ops.backend({})} backend`, () => {
    expect(ops.backend({ threads: 3 })).toMatch(/^cpu-(avx512|avx2|generic) x3$/);
  });

  it('RMSNorm: forward, and backward against finite differences', () => {
    const rows = 5;
    const dim = 24;
    const x = randn(1, rows * dim);
    const w = randn(2, dim);
    const eps = 1e-5;
    const { y, rstd } = ops.rmsnormForward({ x, w, rows, dim, eps });
    expect(relErr(y, rmsnormRef(x, w, rows, dim, eps))).toBeLessThan(1e-6);
    const c = randn(3, rows * dim);
    const { dx, dw } = ops.rmsnormBackward({ dy: c, x, w, rstd, rows, dim });
    expect(
      relErr(
        dx,
        numericGrad((xx) => rmsnormRef(xx, w, rows, dim, eps), x, c),
      ),
    ).toBeLessThan(1e-5);
    expect(
      relErr(
        dw,
        numericGrad((ww) => rmsnormRef(x, ww, rows, dim, eps), w, c),
      ),
    ).toBeLessThan(1e-5);
    const three = ops.rmsnormBackward({ dy: c, x, w, rstd, rows, dim, threads: 3 });
    expect(three).toEqual({ dx, dw });
    expect(ops.rmsnormForward({ x, w, rows, dim, eps, threads: 3 })).toEqual({ y, rstd });
  });

  it('RoPE: forward, and its inverse is the backward (Rᵀ)', () => {
    const rows = 6;
    const heads = 3;
    const headDim = 8;
    const tables = ropeTables(16, headDim, 10000);
    const positions = Int32Array.from([0, 1, 2, 7, 3, 15]);
    const x = randn(4, rows * heads * headDim);
    const args = { rows, heads, headDim, positions, ...tables };
    const y = ops.rope({ x, ...args });
    expect(relErr(y, ropeRef(x, rows, heads, headDim, positions, tables))).toBeLessThan(1e-6);
    const c = randn(5, x.length);
    const back = ops.rope({ x: c, ...args, inverse: true });
    const fd = numericGrad((xx) => ropeRef(xx, rows, heads, headDim, positions, tables), x, c);
    expect(relErr(back, fd)).toBeLessThan(1e-6);
    expect(ops.rope({ x, ...args, threads: 3 })).toEqual(y);
  });

  it('SwiGLU: forward, and backward against finite differences', () => {
    const n = 3000; // more than one task of the elementwise split
    const gate = randn(6, n, 4);
    const up = randn(7, n);
    const act = ops.swigluForward({ gate, up });
    expect(
      relErr(
        act,
        Float64Array.from(gate, (g, i) => silu(g) * up[i]!),
      ),
    ).toBeLessThan(1e-6);
    const dact = randn(8, n);
    const { dgate, dup } = ops.swigluBackward({ gate, up, dact });
    // Elementwise: the derivative of each output by its own inputs.
    const h = 1e-6;
    const wantGate = Float64Array.from(
      gate,
      (g, i) => (dact[i]! * up[i]! * (silu(g + h) - silu(g - h))) / (2 * h),
    );
    expect(relErr(dgate, wantGate)).toBeLessThan(1e-5);
    expect(
      relErr(
        dup,
        Float64Array.from(gate, (g, i) => dact[i]! * silu(g)),
      ),
    ).toBeLessThan(1e-6);
    expect(ops.swigluBackward({ gate, up, dact, threads: 3 })).toEqual({ dgate, dup });
  });

  it('attention (causal, grouped-query, packed sequences): forward and backward', () => {
    const shape: AttnShape = { heads: 4, kvHeads: 2, headDim: 8, seqLens: Int32Array.from([5, 9]) };
    const rows = 14;
    const q = randn(9, rows * 4 * 8);
    const k = randn(10, rows * 2 * 8);
    const v = randn(11, rows * 2 * 8);
    const { out, lse } = ops.attentionForward({ q, k, v, ...shape });
    const ref = attentionRef(q, k, v, shape);
    expect(relErr(out, ref.out)).toBeLessThan(1e-6);
    expect(relErr(lse, ref.lse)).toBeLessThan(1e-6);
    const dout = randn(12, out.length);
    const grads = ops.attentionBackward({ q, k, v, out, dout, lse, ...shape });
    const f = (which: 'q' | 'k' | 'v') => (t: Float64Array) =>
      attentionRef(which === 'q' ? t : q, which === 'k' ? t : k, which === 'v' ? t : v, shape).out;
    expect(relErr(grads.dq, numericGrad(f('q'), q, dout))).toBeLessThan(1e-5);
    expect(relErr(grads.dk, numericGrad(f('k'), k, dout))).toBeLessThan(1e-5);
    expect(relErr(grads.dv, numericGrad(f('v'), v, dout))).toBeLessThan(1e-5);
    expect(ops.attentionForward({ q, k, v, ...shape, threads: 3 })).toEqual({ out, lse });
    expect(ops.attentionBackward({ q, k, v, out, dout, lse, ...shape, threads: 3 })).toEqual(grads);
  });

  for (const dtype of ['float32', 'bf16'] as const)
    it(`fused cross-entropy over 3 vocabulary blocks (${dtype} unembedding): logprobs and d/dx`, () => {
      const rows = 4;
      const dim = 16;
      const vocab = 2500;
      const x = randn(13, rows * dim, 2);
      const w32 = bf16ToF32(f32ToBf16(randn(14, vocab * dim)));
      const w = dtype === 'bf16' ? f32ToBf16(w32) : w32;
      const targets = Int32Array.from([0, 1023, 1024, 2499]); // block edges
      const res = ops.crossEntropy({ x, w, targets, rows, vocab, dim, grad: true });
      const ref = crossEntropyRef(x, w32, targets, vocab, dim);
      expect(relErr(res.logprobs, ref)).toBeLessThan(1e-6);
      const c = randn(15, rows);
      const scaled = Float32Array.from(res.grad!, (g, i) => g * c[Math.floor(i / dim)]!);
      const fd = numericGrad((xx) => crossEntropyRef(xx, w32, targets, vocab, dim), x, c);
      expect(relErr(scaled, fd)).toBeLessThan(1e-5);
      expect(ops.crossEntropy({ x, w, targets, rows, vocab, dim, grad: true, threads: 3 })).toEqual(
        res,
      );
      // Without grad: the same logprobs.
      expect(ops.crossEntropy({ x, w, targets, rows, vocab, dim }).logprobs).toEqual(res.logprobs);
    });

  it('AdamW: torch.optim.AdamW arithmetic over three steps', () => {
    const n = 40000; // several tasks
    let w: Float32Array = randn(16, n);
    let m: Float32Array = new Float32Array(n);
    let v: Float32Array = new Float32Array(n);
    const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradScale: 0.5 };
    const rw = Float64Array.from(w);
    const rm = new Float64Array(n);
    const rv = new Float64Array(n);
    for (let step = 1; step <= 3; step++) {
      const g = randn(16 + step, n);
      const res = ops.adamw({ w, g, m, v, step, ...hp });
      expect(ops.adamw({ w, g, m, v, step, ...hp, threads: 3 })).toEqual(res);
      ({ w, m, v } = res);
      const bc1 = 1 - hp.beta1 ** step;
      const bc2 = 1 - hp.beta2 ** step;
      for (let i = 0; i < n; i++) {
        const gi = g[i]! * hp.gradScale;
        rw[i]! *= 1 - hp.lr * hp.weightDecay;
        rm[i] = hp.beta1 * rm[i]! + (1 - hp.beta1) * gi;
        rv[i] = hp.beta2 * rv[i]! + (1 - hp.beta2) * gi * gi;
        rw[i]! -= (hp.lr / bc1) * (rm[i]! / (Math.sqrt(rv[i]!) / Math.sqrt(bc2) + hp.eps));
      }
    }
    expect(relErr(w, rw)).toBeLessThan(1e-6);
    expect(relErr(m, rm)).toBeLessThan(1e-6);
    expect(relErr(v, rv)).toBeLessThan(1e-6);
  });

  it('AdamW gives the same bits on every kernel set (generic, AVX2, AVX-512)', () => {
    // 40,009 parameters: whole vectors and a tail in every kernel set.
    const script = `
      import { engineOps } from './src/engine/ops.ts';
      import { nativeEngine } from './src/engine/native.ts';
      const n = 40009;
      const wave = (f, s) => Float32Array.from({ length: n }, (_, i) => f(i * s));
      const res = engineOps().adamw({ w: wave(Math.sin, 1), g: wave(Math.cos, 0.7), m: wave(Math.sin, 0.3),
        v: wave((x) => Math.abs(Math.cos(x)), 0.1), step: 3, lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8,
        weightDecay: 0.1, gradScale: 0.5 });
      const hex = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');
      console.log(JSON.stringify({ simd: nativeEngine().simd, bits: [hex(res.w), hex(res.m), hex(res.v)] }));`;
    type Out = { simd: string; bits: string[] };
    const generic = underKernelSet<Out>('generic', script);
    expect(generic.simd).toBe('generic');
    for (const simd of ['avx2', 'avx512'] as const)
      expect(underKernelSet<Out>(simd, script).bits).toEqual(generic.bits);
  });

  it('exp: the AVX2 kernels give the AVX-512 bits, the generic std::exp agrees within 1e-6', () => {
    // SwiGLU's sigmoid and attention's softmax both go through the exp kernel; gate values
    // from -90 to 90 take it to both ends of its clamped range.
    const script = `
      import { engineOps } from './src/engine/ops.ts';
      import { nativeEngine } from './src/engine/native.ts';
      const n = 4099;
      const gate = Float32Array.from({ length: n }, (_, i) => -90 + (180 * i) / (n - 1));
      const up = Float32Array.from({ length: n }, (_, i) => Math.cos(i));
      const act = engineOps().swigluForward({ gate, up });
      console.log(JSON.stringify({ simd: nativeEngine().simd, act: Array.from(act) }));`;
    type Out = { simd: string; act: number[] };
    const generic = underKernelSet<Out>('generic', script);
    const avx2 = underKernelSet<Out>('avx2', script);
    const avx512 = underKernelSet<Out>('avx512', script);
    if (avx512.simd === 'avx512' && avx2.simd === 'avx2-fma') expect(avx2.act).toEqual(avx512.act);
    for (const other of [avx2, avx512])
      for (let i = 0; i < generic.act.length; i++)
        expect(Math.abs(other.act[i]! - generic.act[i]!)).toBeLessThanOrEqual(
          1e-6 * Math.max(1, Math.abs(generic.act[i]!)),
        );
  });

  it('names bad input', () => {
    expect(() =>
      ops.rmsnormForward({ x: new Float32Array(5), w: new Float32Array(2), rows: 2, dim: 2 }),
    ).toThrow(/rmsnormForward: x must be rows\*dim/);
    expect(() =>
      ops.crossEntropy({
        x: new Float32Array(2),
        w: new Float32Array(6),
        targets: Int32Array.from([3]),
        rows: 1,
        vocab: 3,
        dim: 2,
      }),
    ).toThrow(/a target is outside the vocabulary/);
  });
});
