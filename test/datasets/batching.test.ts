/** Data order: seeded epochs, token-budget packing, step plans that survive a resume, eval split. */
import { describe, expect, it } from 'vitest';
import {
  carveEvalSplit,
  packBatches,
  planEpochs,
  planSteps,
  sequenceLength,
} from '../../src/datasets/index.js';

const sorted = (xs: readonly number[]) => [...xs].sort((a, b) => a - b);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('planEpochs', () => {
  it('shuffles each epoch, the same way for the same seed', () => {
    const a = planEpochs(50, { epochs: 3, seed: 7 });
    expect(a).toHaveLength(3);
    for (const order of a) expect(sorted(order)).toEqual(range(50));
    expect(planEpochs(50, { epochs: 3, seed: 7 })).toEqual(a);
    expect(a[0]).not.toEqual(a[1]);
    expect(a[0]).not.toEqual(range(50));
    expect(planEpochs(50, { epochs: 3, seed: 8 })[0]).not.toEqual(a[0]);
  });

  it('keeps earlier epochs when more epochs are planned', () => {
    expect(planEpochs(20, { epochs: 4, seed: 1 }).slice(0, 2)).toEqual(
      planEpochs(20, { epochs: 2, seed: 1 }),
    );
  });

  it('runs part of a last epoch for fractional epochs', () => {
    const plan = planEpochs(10, { epochs: 2.3, seed: 3 });
    expect(plan.map((e) => e.length)).toEqual([10, 10, 3]);
    // The partial epoch is the start of what a full third epoch would be.
    expect(plan[2]).toEqual(planEpochs(10, { epochs: 3, seed: 3 })[2]!.slice(0, 3));
    expect(planEpochs(10, { epochs: 0.5, seed: 3 }).map((e) => e.length)).toEqual([5]);
    expect(planEpochs(10, { epochs: 1.01, seed: 3 })).toHaveLength(1);
  });

  it('refuses nonsense', () => {
    expect(() => planEpochs(10, { epochs: 0, seed: 1 })).toThrow(/epochs must be a number > 0/);
    expect(() => planEpochs(-1, { epochs: 1, seed: 1 })).toThrow(/exampleCount/);
    expect(() => planEpochs(2.5, { epochs: 1, seed: 1 })).toThrow(/exampleCount/);
  });
});

describe('packBatches', () => {
  it('packs whole sequences in order up to the token budget', () => {
    const lengths = [4, 3, 2, 5, 1, 1];
    expect(packBatches(lengths, range(6), { batchTokens: 8 })).toEqual([
      { indices: [0, 1], tokens: 7 },
      { indices: [2, 3, 4], tokens: 8 },
      { indices: [5], tokens: 1 },
    ]);
  });

  it('gives a sequence longer than the budget a step of its own', () => {
    expect(packBatches([2, 20, 2], [0, 1, 2], { batchTokens: 8 })).toEqual([
      { indices: [0], tokens: 2 },
      { indices: [1], tokens: 20 },
      { indices: [2], tokens: 2 },
    ]);
  });

  it('follows the given order', () => {
    expect(packBatches([1, 2, 3], [2, 0, 1], { batchTokens: 4 }).map((b) => b.indices)).toEqual([
      [2, 0],
      [1],
    ]);
  });

  it('measures datums, SFT examples and DPO pairs', () => {
    const datum = { tokens: [1, 2, 3], targets: [2, 3, 4], weights: [1, 1, 1] };
    expect(sequenceLength(datum)).toBe(3);
    expect(sequenceLength({ datum })).toBe(3);
    expect(sequenceLength({ chosen: datum, rejected: { ...datum, tokens: [1] } })).toBe(4);
    expect(sequenceLength({ promptTokens: [1, 2] })).toBe(2);
  });

  it('refuses a bad budget or index', () => {
    expect(() => packBatches([1], [0], { batchTokens: 0 })).toThrow(/batchTokens/);
    expect(() => packBatches([1], [1], { batchTokens: 4 })).toThrow(/order names item 1/);
  });
});

describe('planSteps', () => {
  const lengths = [5, 9, 3, 7, 2, 8, 4, 6, 1, 10, 5, 5];
  const opts = { epochs: 2.5, seed: 42, batchTokens: 16 };

  it('packs each epoch on its own, numbering steps across the job', () => {
    const plan = planSteps(lengths, opts);
    expect(plan.steps.map((s) => s.step)).toEqual(range(plan.steps.length));
    for (const [epoch, order] of plan.epochs.entries()) {
      const inEpoch = plan.steps.filter((s) => s.epoch === epoch).flatMap((s) => s.indices);
      expect(inEpoch).toEqual(order);
    }
    for (const s of plan.steps) {
      expect(s.tokens).toBe(s.indices.reduce((n, i) => n + lengths[i]!, 0));
      if (s.indices.length > 1) expect(s.tokens).toBeLessThanOrEqual(16);
    }
  });

  it('means the same examples by "step k" in every run, so a resume sees the same data', () => {
    const uninterrupted = planSteps(lengths, opts).steps;
    const k = 5;
    const resumed = planSteps(lengths, opts).steps.filter((s) => s.step >= k);
    expect(resumed).toEqual(uninterrupted.slice(k));
  });
});

describe('carveEvalSplit', () => {
  it('holds out min(10%, 200) examples, none under 10 examples', () => {
    expect(carveEvalSplit(9, { seed: 1 }).eval).toEqual([]);
    expect(carveEvalSplit(10, { seed: 1 }).eval).toHaveLength(1);
    expect(carveEvalSplit(100, { seed: 1 }).eval).toHaveLength(10);
    expect(carveEvalSplit(5000, { seed: 1 }).eval).toHaveLength(200);
    expect(carveEvalSplit(100, { seed: 1, fraction: 0.2, maxEval: 15 }).eval).toHaveLength(15);
    expect(carveEvalSplit(100, { seed: 1, fraction: 0 }).eval).toEqual([]);
  });

  it('splits every index exactly once, deterministically, by seed', () => {
    const a = carveEvalSplit(300, { seed: 5 });
    expect(sorted([...a.train, ...a.eval])).toEqual(range(300));
    expect(a.train).toEqual(sorted(a.train));
    expect(a.eval).toEqual(sorted(a.eval));
    expect(carveEvalSplit(300, { seed: 5 })).toEqual(a);
    expect(carveEvalSplit(300, { seed: 6 }).eval).not.toEqual(a.eval);
  });

  it('refuses a fraction outside [0, 1)', () => {
    expect(() => carveEvalSplit(100, { seed: 1, fraction: 1 })).toThrow(/fraction/);
  });
});
