// The hand-written GEMM against a float64 reference, for every transpose combination and
// shapes that hit full tiles, edge tiles, multiple k-blocks and the small-m path; and the
// AVX2 kernels against the portable fallback (forced with TEMPER_NO_AVX2=1 in a child).
import { describe, expect, it } from 'vitest';
import { nativeEngine } from '../../src/engine/native.js';
import { rng, underKernelSet } from './helpers.js';

function reference(
  m: number,
  n: number,
  k: number,
  a: Float32Array,
  b: Float32Array,
  ta: boolean,
  tb: boolean,
): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++)
        s += a[ta ? p * m + i : i * k + p]! * b[tb ? j * k + p : p * n + j]!;
      c[i * n + j] = s;
    }
  return c;
}

const shapes: [number, number, number][] = [
  [1, 7, 5],
  [3, 33, 300],
  [6, 16, 256],
  [13, 37, 513],
  [100, 130, 70],
  [49, 129, 257],
  // more panels than one packing task takes (row and column groups), with partial last ones
  [301, 290, 40],
  // the threaded GEMM's grid: more than 1024 columns (several column slabs per thread) and a
  // packed A with more rows than columns (row slabs, B packed by each)
  [40, 2100, 70],
  [530, 70, 300],
];

describe('engine GEMM', () => {
  it.each(shapes)('m=%i n=%i k=%i, all transposes, bitwise equal at 1 to 4 threads', (m, n, k) => {
    const r = rng(m * 1000 + n + k);
    const a = Float32Array.from({ length: m * k }, () => r() - 0.5);
    const b = Float32Array.from({ length: k * n }, () => r() - 0.5);
    for (const transA of [false, true])
      for (const transB of [false, true]) {
        const ref = reference(m, n, k, a, b, transA, transB);
        const c1 = nativeEngine().matmul(m, n, k, a, b, { transA, transB, threads: 1 });
        for (const threads of [2, 3, 4]) {
          const ct = nativeEngine().matmul(m, n, k, a, b, { transA, transB, threads });
          expect(Buffer.from(c1.buffer).equals(Buffer.from(ct.buffer))).toBe(true);
        }
        let maxErr = 0;
        for (let i = 0; i < ref.length; i++) maxErr = Math.max(maxErr, Math.abs(c1[i]! - ref[i]!));
        expect(maxErr).toBeLessThan(1e-5 * Math.sqrt(k));
      }
  });

  it('every kernel set (generic, AVX2, AVX-512 where the CPU has it) agrees', () => {
    const script = `
      import { nativeEngine } from './src/engine/native.ts';
      const a = Float32Array.from({ length: 150 * 70 }, (_, i) => Math.sin(i));
      const b = Float32Array.from({ length: 70 * 140 }, (_, i) => Math.cos(i));
      const c = [];
      // every transpose combination: each packs its panels by a different path (copy, transpose)
      for (const transA of [false, true])
        for (const transB of [false, true])
          c.push(...nativeEngine().matmul(150, 140, 70, a, b, { transA, transB, threads: 2 }));
      console.log(JSON.stringify({ simd: nativeEngine().simd, c }));`;
    const generic = underKernelSet<{ simd: string; c: number[] }>('generic', script);
    expect(generic.simd).toBe('generic');
    for (const simd of ['avx2', 'avx512'] as const) {
      const other = underKernelSet<{ simd: string; c: number[] }>(simd, script);
      expect(['generic', 'avx2-fma', 'avx512']).toContain(other.simd);
      const maxDiff = Math.max(
        ...generic.c.map((x: number, i: number) => Math.abs(x - other.c[i]!)),
      );
      expect(maxDiff).toBeLessThan(1e-4);
    }
  });
});
