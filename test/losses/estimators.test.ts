// Advantages, KL estimators, gradient-accumulation normalisation and metric merging.
import { describe, expect, it } from 'vitest';
import {
  computeGroupAdvantages,
  countLossSequences,
  countLossTokens,
  DEFAULT_GRAD_ACC_NORMALIZATION,
  forwardBackward,
  GradAccumulationCounter,
  gradAccumulationScale,
  groupZScores,
  grpoLoss,
  igpoTurnAdvantages,
  klK1,
  klK3,
  klShapedAdvantages,
  LossError,
  meanKl,
  mergeMetrics,
  parseGradAccNormalization,
  parseMetricKey,
  ppoKl,
  refKld,
  turnAdvantagesToTokens,
} from '../../src/losses/index.js';
import { expectVectorsClose, randomRollouts } from './helpers.js';

describe('group advantages', () => {
  it('sum to zero and are scale-free', () => {
    const a = groupZScores([3, 7, 1, 9, 4]);
    expect(a.reduce((x, y) => x + y)).toBeCloseTo(0, 14);
    const b = groupZScores([30, 70, 10, 90, 40]);
    expectVectorsClose([b], [a], 7);
  });
  it('keep uniform groups as zeros when filtering is off', () => {
    const r = computeGroupAdvantages([[2, 2, 2]], { filterUniform: false });
    expect(r.advantages).toEqual([[0, 0, 0]]);
  });
  it('filter a chunk group by group, dropping rather than replacing', () => {
    const chunk = [
      [1, 0, 1],
      [0, 0, 0],
      [0.5, 0.5],
      [1, 1, 0],
    ];
    const r = computeGroupAdvantages(chunk);
    expect(r.kept).toEqual([0, 3]);
    expect(r.advantages).toHaveLength(2);
    expect(r.dropped.map((d) => d.reason)).toEqual(['uniform', 'uniform']);
  });
  it('reject non-finite rewards', () => {
    expect(() => groupZScores([1, Number.NaN])).toThrow(LossError);
  });
});

describe('IGPO', () => {
  it('gives zeros for a single turn and for constant rewards', () => {
    expect(igpoTurnAdvantages([[0.3]], [[1]])).toEqual([[0]]);
    expect(igpoTurnAdvantages([[0.2, 0.2]], [[1, 1]])).toEqual([[0, 0]]);
  });
  it('normalises each reward kind over the turns that have it (null: none)', () => {
    // IG present [0.5, 0.1, -0.3] → z [√1.5, 0, -√1.5]; outcomes present [1, 0] → z [1, -1]
    const a = igpoTurnAdvantages(
      [
        [0.5, null],
        [0.1, -0.3, null],
      ],
      [
        [null, 1],
        [null, null, 0],
      ],
    );
    const z = Math.sqrt(1.5);
    const expected = [
      [z + 0.95, 1],
      [0.95 * (-z - 0.95), -z - 0.95, -1],
    ];
    expected.forEach((row, i) => {
      row.forEach((x, t) => {
        expect(a[i]![t]).toBeCloseTo(x, 4);
      });
    });
  });
  it('gives the last turns no shared shift: their advantages sum to 0 over the group', () => {
    // two-turn episodes, the outcome on the last turn; zeros standing in for the first turns'
    // absent outcomes would lift every last turn (here all four) above 0
    const outcomes = [0.5, 0.5, 1, 0.5];
    const ig = outcomes.map(() => [0.1, null]);
    const last = igpoTurnAdvantages(
      ig,
      outcomes.map((o) => [null, o]),
    ).map((r) => r[1]!);
    expect(last.reduce((s, x) => s + x, 0)).toBeCloseTo(0, 9);
    expect(last.filter((x) => x < 0)).toHaveLength(3);
    const padded = igpoTurnAdvantages(
      ig,
      outcomes.map((o) => [0, o]),
    ).map((r) => r[1]!);
    expect(padded.every((x) => x > 0)).toBe(true);
  });
  it('broadcasts turn advantages to their token spans', () => {
    const t = turnAdvantagesToTokens(
      [1.5, -2],
      [
        { start: 1, end: 3 },
        { start: 4, end: 6 },
      ],
      7,
    );
    expect(Array.from(t)).toEqual([0, 1.5, 1.5, 0, -2, -2, 0]);
    expect(() => turnAdvantagesToTokens([1], [{ start: 2, end: 9 }], 7)).toThrow(/outside/);
  });
});

describe('advantage-shaped KL', () => {
  it('adds β·mask·(mean diff - diff), centred on the batch', () => {
    const r = klShapedAdvantages({
      advantages: [
        [1, 1, 1],
        [0, 0],
      ],
      sampling: [
        [-1, -2, -3],
        [-1, -1],
      ],
      ref: [
        [-1.5, -2, -2],
        [-1, -3],
      ],
      masks: [
        [0, 1, 1],
        [1, 1],
      ],
      coef: 0.5,
    });
    // diffs: [0, 0, -1], [0, 2]; mean over 4 masked tokens = 1/4.
    expect(r.meanDiff).toBe(0.25);
    expect(Array.from(r.advantages[0]!)).toEqual([1, 1 + 0.5 * 0.25, 1 + 0.5 * 1.25]);
    expect(Array.from(r.advantages[1]!)).toEqual([0.5 * 0.25, 0.5 * -1.75]);
  });
  it('discounts the penalty when asked', () => {
    const r = klShapedAdvantages({
      advantages: [[0, 0]],
      sampling: [[-1, -1]],
      ref: [[-1, -2]],
      masks: [[1, 1]],
      coef: 1,
      discount: 0.5,
    });
    // diffs [0, 1], mean 0.5: penalties [0.5, -0.5] → discounted [0.25, -0.5].
    expect(Array.from(r.advantages[0]!)).toEqual([0.25, -0.5]);
  });
});

describe('KL estimators', () => {
  it('k1 and k3', () => {
    expect(klK1(-1, -1.5)).toBe(0.5);
    expect(klK3(-1, -1.1)).toBeCloseTo(Math.exp(-0.1) + 0.1 - 1, 15);
    expect(klK3(-2, -2)).toBe(0);
  });
  it('k3 is non-negative and both estimate the KL on samples', () => {
    // Samples from p = softmax over 3 outcomes; q another distribution: E_p[k1] = E_p[k3] = KL.
    const p = [0.6, 0.3, 0.1];
    const q = [0.4, 0.4, 0.2];
    const kl = p.reduce((s, pi, i) => s + pi * Math.log(pi / q[i]!), 0);
    const e1 = p.reduce((s, pi, i) => s + pi * klK1(Math.log(pi), Math.log(q[i]!)), 0);
    const e3 = p.reduce((s, pi, i) => s + pi * klK3(Math.log(pi), Math.log(q[i]!)), 0);
    expect(e1).toBeCloseTo(kl, 14);
    expect(e3).toBeCloseTo(kl, 14);
    for (let i = 0; i < 3; i++)
      expect(klK3(Math.log(p[i]!), Math.log(q[i]!))).toBeGreaterThanOrEqual(0);
  });
  it('means over active tokens', () => {
    expect(meanKl('k1', [-1, -2, -3], [-1, -1, -1], [0, 1, 1])).toBe(-1.5);
    expect(refKld([-1, -1], [-1, -1])).toBe(0);
    expect(ppoKl([-1], [-1.5])).toBeCloseTo(Math.exp(0.5) - 0.5 - 1, 15);
    expect(meanKl('k3', [], [])).toBe(0);
  });
});

describe('grad-accumulation normalisation', () => {
  it('counts non-zero-weight tokens and sequences', () => {
    const w = [[0, 1, 0.5], [0, 0], [-1]];
    expect(countLossTokens(w)).toBe(3);
    expect(countLossSequences(w)).toBe(2);
  });
  it('scales by 1/tokens, 1/sequences or 1', () => {
    const c = new GradAccumulationCounter();
    c.add([
      [0, 1, 1],
      [1, 0],
    ]);
    c.add([[1, 1, 1, 1]]);
    expect([c.tokens, c.sequences, c.microBatches]).toEqual([7, 3, 2]);
    expect(c.scale('num_loss_tokens')).toBe(1 / 7);
    expect(c.scale('num_sequences')).toBe(1 / 3);
    expect(c.scale('none')).toBe(1);
    c.reset();
    expect(c.scale('num_loss_tokens')).toBe(1);
    expect(gradAccumulationScale('num_sequences', { tokens: 5, sequences: 0 })).toBe(1);
  });
  it('num_loss_tokens on a raw-sum loss gives the token-mean loss gradient', () => {
    const { data, logprobs } = randomRollouts(3, { withRef: true, datums: 4 });
    const sum = forwardBackward(grpoLoss(), data, logprobs);
    const mean = forwardBackward(grpoLoss({ aggregation: 'token-mean' }), data, logprobs);
    const c = new GradAccumulationCounter();
    c.add(data.map((d) => d.loss_fn_inputs.weights as Float64Array));
    const s = c.scale('num_loss_tokens');
    expectVectorsClose(sum.grads, mean.grads, 14, s);
  });
  it('parses modes and knows the recipe defaults', () => {
    expect(parseGradAccNormalization(undefined)).toBe('none');
    expect(parseGradAccNormalization('num_sequences')).toBe('num_sequences');
    expect(() => parseGradAccNormalization('tokens')).toThrow(
      /num_loss_tokens, num_sequences, none/,
    );
    expect(DEFAULT_GRAD_ACC_NORMALIZATION).toEqual({
      sft: 'none',
      dpo: 'none',
      orpo: 'none',
      rl: 'num_loss_tokens',
    });
  });
});

describe('metric keys', () => {
  it('parse name:reduction', () => {
    expect(parseMetricKey('tis/clip_frac:mean')).toEqual({
      name: 'tis/clip_frac',
      reduction: 'mean',
    });
    expect(() => parseMetricKey('loss')).toThrow(LossError);
  });
  it('merge micro-batches by reduction', () => {
    expect(
      mergeMetrics([
        { 'loss:sum': 1, 'kl:mean': 0.2, 'lo:min': 3, 'hi:max': 1 },
        { 'loss:sum': 2, 'kl:mean': 0.4, 'lo:min': 2, 'hi:max': 5 },
        { 'loss:sum': 3 },
      ]),
    ).toEqual({ 'loss:sum': 6, 'kl:mean': 0.30000000000000004, 'lo:min': 2, 'hi:max': 5 });
  });
});
