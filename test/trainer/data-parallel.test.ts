// The pieces of the data-parallel all-reduce: the fixed batch split, the rank-order sum, and
// the root's reducer (every rank gets the same sum; a missing rank fails the step).
import { describe, expect, it } from 'vitest';
import {
  bytesToFloat32,
  GradientReducer,
  shardRanges,
  sumInRankOrder,
} from '../../src/trainer/data-parallel.js';
import { TrainerError } from '../../src/trainer/errors.js';

const part = (values: number[], tokens = 1) => ({
  grads: Float32Array.from(values),
  tokens,
  sequences: 1,
  microBatches: 1,
});

describe('data parallelism', () => {
  it('splits a batch into contiguous blocks in rank order', () => {
    expect(shardRanges(5, 2)).toEqual([
      [0, 2],
      [2, 5],
    ]);
    expect(shardRanges(1, 3)).toEqual([
      [0, 0],
      [0, 0],
      [0, 1],
    ]);
    expect(shardRanges(6, 1)).toEqual([[0, 6]]);
  });

  it('sums in rank order, in float32', () => {
    // (1e8 + 1) + -1e8 in float32 is 0; the other order would give 1.
    const sum = sumInRankOrder([part([1e8], 2), part([1], 3), part([-1e8], 4)]);
    expect(Array.from(sum.grads)).toEqual([0]);
    expect(sum.tokens).toBe(9);
    expect(sum.microBatches).toBe(3);
  });

  it('answers every rank with the same sum once all arrived, whatever the arrival order', async () => {
    const reducer = new GradientReducer(5_000);
    const r2 = reducer.contribute(7, 2, 3, part([3, 30]));
    const r0 = reducer.contribute(7, 0, 3, part([1, 10]));
    const r1 = reducer.contribute(7, 1, 3, part([2, 20]));
    const [a, b, c] = await Promise.all([r0, r1, r2]);
    expect(Array.from(a.grads)).toEqual([6, 60]);
    expect(b).toBe(a);
    expect(c).toBe(a);
  });

  it('fails the step when a rank never arrives, and refuses bad ranks', async () => {
    const reducer = new GradientReducer(50);
    await expect(reducer.contribute(1, 0, 2, part([1]))).rejects.toMatchObject({
      code: 'unavailable',
    });
    await expect(reducer.contribute(1, 2, 2, part([1]))).rejects.toBeInstanceOf(TrainerError);
    const mismatch = new GradientReducer(5_000);
    const a = mismatch.contribute(1, 0, 2, part([1, 2]));
    const b = mismatch.contribute(1, 1, 2, part([1]));
    await expect(a).rejects.toMatchObject({ code: 'shape_mismatch' });
    await expect(b).rejects.toMatchObject({ code: 'shape_mismatch' });
  });

  it('reads gradient bytes at any alignment', () => {
    const f = Float32Array.from([1.5, -2]);
    const bytes = new Uint8Array(9);
    bytes.set(new Uint8Array(f.buffer), 1);
    expect(Array.from(bytesToFloat32(bytes.subarray(1)))).toEqual([1.5, -2]);
  });
});
