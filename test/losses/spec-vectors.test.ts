// Every test vector of specs/losses.md, in the spec's order.
import { describe, expect, it } from 'vitest';
import {
  alignCompletionLogprobs,
  builtinLoss,
  cispoLoss,
  computeGroupAdvantages,
  dapoLoss,
  dpoLoss,
  droLoss,
  forward,
  forwardBackward,
  groupZScores,
  grpoLoss,
  gspoLoss,
  igpoTurnAdvantages,
  type LossDatum,
  orpoLoss,
  resolveRlLossMethod,
  rolloutSampleToDatum,
  sampledReverseKlAdvantages,
  sftLoss,
  TisStats,
  targetWeights,
  tisConfigSchema,
  tisMetrics,
  tisWeights,
} from '../../src/losses/index.js';
import { expectAllClose, expectClose, tokenDatum } from './helpers.js';

const f64 = (xs: number[]) => Float64Array.from(xs);

describe('coordinates', () => {
  it('left-pads completion-only sampler logprobs to target coordinates', () => {
    expect(alignCompletionLogprobs([-0.5, -0.6], 3, 5)).toEqual([0, 0, -0.5, -0.6]);
  });

  it('turns an RL sample into a datum: targets, weights and logprobs shifted by one', () => {
    const { datum, promptLen } = rolloutSampleToDatum({
      tokens: [5, 6, 7, 8, 9],
      logprobs: [0, 0, 0, -0.5, -0.6],
      loss_mask: [0, 0, 0, 1, 1],
      reward: 1,
    });
    expect(promptLen).toBe(3);
    expect(datum.model_input).toEqual([5, 6, 7, 8]);
    expect(datum.loss_fn_inputs).toEqual({
      target_tokens: [6, 7, 8, 9],
      weights: [0, 0, 1, 1],
      logprobs: [0, 0, -0.5, -0.6],
    });
  });
});

describe('advantages', () => {
  it('z-scores groups with the unbiased std and the epsilon rules', () => {
    const a = groupZScores([1, 0, 0, 1]);
    for (const [x, s] of a.map((v, i) => [v, i % 3 === 0 ? 1 : -1] as const)) {
      expectClose(x, s * 0.8660254, 1e-7);
    }
    const b = groupZScores([1, 0, 0, 0]);
    expectClose(b[0]!, 1.49999997);
    for (const v of b.slice(1)) expectClose(v, -0.49999999);
    expect(groupZScores([1, 1, 1, 1])).toEqual([0, 0, 0, 0]);
    const c = groupZScores([0.2, 0.5, 0.9]);
    expectAllClose(c, [-0.94915797, -0.0949158, 1.04407377]);
  });

  it('drops singleton and uniform groups', () => {
    const r = computeGroupAdvantages([[1, 1, 1, 1], [1, 0], [3]]);
    expect(r.kept).toEqual([1]);
    expect(r.dropped).toEqual([
      { group: 0, reason: 'uniform' },
      { group: 2, reason: 'singleton' },
    ]);
  });
});

describe('GRPO token vectors (ε=0.2, β=0.001, TIS cap 5)', () => {
  const cases: [number, number, number, number, number, number, number][] = [
    // lp, old, inf, ref, A → loss, dloss/dlp
    [-1, -1.2, -1.3, -1.1, 1, -1.32620026, 9.516258e-5],
    [-1, -1.2, -1.3, -1.1, -1, 1.34986364, 1.34995397],
    [-1, -0.9, -0.9, -1, 1, -0.90483742, -0.90483742],
    [-2, -1, -1, -2, -0.5, 0.4, 0],
  ];
  it.each(cases)('lp %d old %d inf %d ref %d A %d', (lp, old, inf, ref, adv, loss, grad) => {
    const r = forwardBackward(grpoLoss(), [tokenDatum({ old, inf, ref, adv })], [[lp]]);
    expectClose(r.loss, loss);
    const g = r.grads[0]![0]!;
    if (grad === 0) expect(g).toBe(0);
    else expect(Math.abs(g - grad) / Math.abs(grad)).toBeLessThan(1e-6);
  });
});

describe('DAPO vectors (ε=0.2, ε_high=0.28)', () => {
  it('clips asymmetrically', () => {
    const run = (d: LossDatum, lp: number, c?: number) =>
      forward(dapoLoss(c === undefined ? {} : { epsClipC: c }), [d], [[lp]]).loss;
    expectClose(run(tokenDatum({ old: -1.2, inf: -1.2, adv: 1 }), -1), -1.2214028);
    expectClose(run(tokenDatum({ old: -1.2, inf: -1.2, adv: -1 }), -1), 1.2214028);
  });

  it('dual-clips negative advantages with c', () => {
    const r = forwardBackward(
      dapoLoss({ epsClipC: 3 }),
      [tokenDatum({ old: -2, inf: -2, adv: -1 })],
      [[0]],
    );
    expectClose(r.loss, 3);
    expect(r.grads[0]![0]).toBe(0);
  });
});

describe('CISPO vectors', () => {
  it.each([
    [-1, -1.5, -1.5, 1, 1.28, -1.28],
    [-1, -1.1, -1.2, -0.5, -0.61070138, 0.61070138],
  ])('lp %d old %d inf %d A %d', (lp, old, inf, adv, loss, grad) => {
    const r = forwardBackward(cispoLoss(), [tokenDatum({ old, inf, adv })], [[lp]]);
    expectClose(r.loss, loss);
    expectClose(r.grads[0]![0]!, grad);
  });
});

describe('GSPO vectors', () => {
  const gspoDatum = (old: number[]): LossDatum => ({
    loss_fn_inputs: {
      target_tokens: [1, 2, 3],
      weights: [1, 1, 1],
      logprobs: old,
      old_logprobs: old,
      advantages: [1],
    },
  });
  it('uses the sequence ratio exp(mean(lp - old))', () => {
    const r = forward(gspoLoss(), [gspoDatum([-1.1, -0.6, -2.05])], [[-1, -0.5, -2]]);
    expectClose(r.metrics['gspo_ratio:mean']!, 1.08690405);
    expectClose(r.loss, -3.26071215);
  });
  it('clips the sequence ratio to 1.2', () => {
    const r = forward(gspoLoss(), [gspoDatum([-1.5, -0.9, -2.5])], [[-1, -0.5, -2]]);
    expect(r.metrics['gspo_clip_frac:mean']).toBe(1);
    expectClose(r.loss, -3.6);
  });
});

describe('DRO vectors (β=0.05)', () => {
  it('adds the quadratic penalty only where A ≠ 0', () => {
    expectClose(
      forward(droLoss(), [tokenDatum({ old: -1.5, inf: -1.5, adv: 1 })], [[-1]]).loss,
      1.00625,
    );
    expect(forward(droLoss(), [tokenDatum({ old: -1.5, inf: -1.5, adv: 0 })], [[-1]]).loss).toBe(0);
  });
});

describe('TIS vectors', () => {
  const ones = (n: number) => new Float64Array(n).fill(1);
  it('token level caps at 5', () => {
    const w = tisWeights(
      f64([-0.1, -0.5, -2]),
      f64([-3, -0.4, -1]),
      ones(3),
      tisConfigSchema.parse({}),
    );
    expectAllClose(w, [5, 0.90483742, 0.36787944]);
  });
  it('sequence level broadcasts exp(mean)', () => {
    const cfg = tisConfigSchema.parse({ level: 'sequence' });
    const w = tisWeights(f64([-0.2, -0.4]), f64([-0.5, -0.3]), ones(2), cfg);
    for (const v of w) expectClose(v, 1.10517092);
  });
  it('IcePop zeroes tokens outside [1/thr, thr]', () => {
    const cfg = tisConfigSchema.parse({ cap: 100, icepopThreshold: 2 });
    const stats = new TisStats();
    const w = tisWeights(f64([-2, -0.5, 2]), f64([0, 0, 0]), ones(3), cfg, stats);
    expect(w[0]).toBe(0);
    expectClose(w[1]!, Math.exp(-0.5));
    expect(w[2]).toBe(0);
    expectClose(tisMetrics(cfg, stats)['tis/icepop_clip_frac:mean']!, 2 / 3);
  });
});

describe('preference vectors', () => {
  // chosen [-0.1,-0.1], rejected [-0.1,-2.0], refs [-0.5,-1.0] each side; tokens share 2.
  const pair = (refC: number[], refR: number[]): LossDatum[] => [
    { model_input: [1, 2], loss_fn_inputs: { target_tokens: [2, 3], ref_logprobs: refC } },
    { model_input: [1, 2], loss_fn_inputs: { target_tokens: [2, 4], ref_logprobs: refR } },
  ];
  it('DPO: margin 1.9, loss 0.60265291 at β=0.1', () => {
    const r = forward(dpoLoss(), pair([-0.5, -1], [-0.5, -1]), [
      [-0.1, -0.1],
      [-0.1, -2.0],
    ]);
    expectClose(r.metrics['margin:mean']!, 1.9);
    expectClose(r.loss, 0.60265291);
    expect(r.metrics['accuracy:mean']).toBe(1);
  });
  it('ORPO λ=1 on the same inputs', () => {
    const r = forward(orpoLoss(), pair([-0.5, -1], [-0.5, -1]), [
      [-0.1, -0.1],
      [-0.1, -2.0],
    ]);
    expectClose(r.loss, 0.11632709);
    expectClose(r.metrics['sft_loss:mean']!, 0.1);
    expectClose(r.metrics['or_loss:mean']!, 0.01632709);
    expectClose(r.metrics['log_odds_ratio:mean']!, 4.106755);
  });
  it('ORPO λ=0.5 with rs=2', () => {
    const data: LossDatum[] = [
      { model_input: [1, 2, 3, 4], loss_fn_inputs: { target_tokens: [2, 3, 4, 5] } },
      { model_input: [1, 2, 7, 8], loss_fn_inputs: { target_tokens: [2, 7, 8, 9] } },
    ];
    const r = forward(orpoLoss({ lambda: 0.5 }), data, [
      [-1, -0.5, -0.2, -0.3],
      [-1, -0.5, -1.2, -2.3],
    ]);
    expectClose(r.loss, 0.39955328);
    expectClose(r.metrics['sft_loss:mean']!, 0.33333333);
    expectClose(r.metrics['or_loss:mean']!, 0.1324399);
    expectClose(r.metrics['log_odds_ratio:mean']!, 1.95467566);
  });
});

describe('IGPO turn advantages (γ=0.95)', () => {
  it('z-normalises IG and outcome separately and discounts backwards', () => {
    const a = igpoTurnAdvantages(
      [
        [0.5, 0.2],
        [0.1, -0.3, 0.4],
      ],
      [
        [0, 1],
        [0, 0, 0],
      ],
    );
    const expected = [
      [2.61693121, 2.07179056],
      [-2.63761699, -1.94782738, 0.28975239],
    ];
    expected.forEach((row, i) => {
      expectAllClose(a[i]!, row);
    });
  });
});

describe('distillation', () => {
  it('advantages are (teacher - sampling)·scale on the response', () => {
    const r = sampledReverseKlAdvantages({
      teacher: [-9, -0.2, -1, -0.3],
      sampling: [-8, -0.5, -0.8, -0.7],
      promptLen: 2,
      scale: 2,
    });
    expectAllClose(r.advantages, [0, 0.6, -0.4, 0.8]);
    expectClose(r.reverseKlSum / r.activeTokens, (-0.3 + 0.2 - 0.4) / 3);
  });
});

describe('SFT', () => {
  it('single sample: lp [0,-1], rs=2 → loss 1.0, response_tokens 1', () => {
    const r = forward(
      sftLoss({ promptLens: [2] }),
      [{ loss_fn_inputs: { target_tokens: [5, 6] } }],
      [[0, -1]],
    );
    expect(r.loss).toBe(1);
    expect(r.metrics['response_tokens:sum']).toBe(1);
    expect(r.metrics['ce_loss:mean']).toBe(1);
  });
  it('renderer weights with reduction "mean": [0,1,1,1] → [1/3,1/3,1/3]', () => {
    expect(targetWeights([0, 1, 1, 1], 'mean')).toEqual([1 / 3, 1 / 3, 1 / 3]);
  });
});

describe('managed RFT methods', () => {
  it('have the documented defaults', () => {
    expect(resolveRlLossMethod()).toMatchObject({
      method: 'grpo',
      epsLow: 0.2,
      epsHigh: 0.2,
      klBeta: 0.001,
      aggregation: 'token-mean',
      isLevel: 'token',
    });
    expect(resolveRlLossMethod({ method: 'dapo' })).toMatchObject({ epsHigh: 0.28, klBeta: 0 });
    expect(resolveRlLossMethod({ method: 'gspo-token' })).toMatchObject({
      epsLow: 3e-4,
      epsHigh: 4e-4,
      klBeta: 0,
      aggregation: 'seq-mean-token-mean',
      isLevel: 'sequence',
    });
    expect(resolveRlLossMethod({ method: 'grpo', klBeta: 0.05 }).klBeta).toBe(0.05);
    expect(resolveRlLossMethod({ method: 'dapo', klBeta: 0 }).klBeta).toBe(0);
  });
  it('reject kl_beta for DAPO and GSPO-token with the exact messages', () => {
    expect(() => resolveRlLossMethod({ method: 'dapo', klBeta: 0.01 })).toThrow(
      'loss_config.kl_beta must be 0/unset when method is DAPO',
    );
    expect(() => resolveRlLossMethod({ method: 'gspo-token', klBeta: 0.01 })).toThrow(
      'loss_config.kl_beta must be 0/unset when method is GSPO_TOKEN',
    );
  });
});

describe('built-in losses', () => {
  it('cross_entropy without target_tokens fails with the API message', () => {
    expect(() =>
      forward(builtinLoss('cross_entropy'), [{ loss_fn_inputs: { weights: [1] } }], [[-1]]),
    ).toThrow("missing required field 'target_tokens'");
  });
  it('return per-datum logprobs and loss:sum', () => {
    const r = forward(
      builtinLoss('cross_entropy'),
      [{ loss_fn_inputs: { target_tokens: [3, 4], weights: [1, -0.5] } }],
      [[-1, -2]],
    );
    expect(r.loss).toBe(0);
    expect(r.metrics).toEqual({ 'loss:sum': 0 });
    expect(Array.from(r.loss_fn_outputs[0]!.logprobs.data)).toEqual([-1, -2]);
  });
});
