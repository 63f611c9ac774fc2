// Properties the losses must have whatever the inputs.
import { describe, expect, it } from 'vitest';
import {
  builtinLoss,
  cispoLoss,
  crossEntropyBackwardDatums,
  dapoLoss,
  dpoLoss,
  droLoss,
  forward,
  forwardBackward,
  grpoLoss,
  gspoLoss,
  importanceSamplingLoss,
  type LossDatum,
  type LossFn,
  ppoKl,
  refKld,
  reinforceLoss,
  rlMethodLoss,
  sftLoss,
} from '../../src/losses/index.js';
import { expectVectorsClose, randomRollouts, rng, uniform } from './helpers.js';

describe('PPO with every ratio inside the clip is importance sampling', () => {
  it('built-in ppo equals built-in importance_sampling', () => {
    const r = rng(1);
    const lp = [uniform(r, 12, -3, -0.1)];
    const q = lp[0]!.map((v) => v + (r() - 0.5) * 0.3); // |lp - q| < 0.15: r in (0.86, 1.17)
    const data: LossDatum[] = [
      {
        loss_fn_inputs: {
          target_tokens: new Array(12).fill(1),
          logprobs: q,
          advantages: uniform(r, 12, -2, 2),
        },
      },
    ];
    const a = forwardBackward(builtinLoss('ppo'), data, lp);
    const b = forwardBackward(builtinLoss('importance_sampling'), data, lp);
    expect(a.loss).toBeCloseTo(b.loss, 14);
    expectVectorsClose(a.grads, b.grads, 14);
  });

  it('GRPO without KL equals the IS recipe loss', () => {
    const { data, logprobs } = randomRollouts(2, { spread: 0.15, perTokenAdvantages: true });
    const a = forwardBackward(grpoLoss({ klBeta: 0 }), data, logprobs);
    const b = forwardBackward(importanceSamplingLoss(), data, logprobs);
    expect(a.loss).toBeCloseTo(b.loss, 13);
    expectVectorsClose(a.grads, b.grads, 13);
    expect(a.metrics['ppo_clip_frac:mean']).toBe(0);
  });
});

describe('masked tokens get zero gradient', () => {
  const losses: [string, LossFn][] = [
    ['grpo', grpoLoss()],
    ['dapo', dapoLoss({ epsClipC: 2 })],
    ['gspo', gspoLoss()],
    ['cispo', cispoLoss()],
    ['dro', droLoss()],
    ['is', importanceSamplingLoss()],
    ['reinforce', reinforceLoss({ klBeta: 0.1 })],
    ['method grpo', rlMethodLoss()],
    ['method gspo-token', rlMethodLoss({ method: 'gspo-token' })],
    ['sft', sftLoss()],
  ];
  it.each(losses)('%s', (_name, loss) => {
    const { data, logprobs } = randomRollouts(3, { withRef: true, datums: 4 });
    const { grads } = forwardBackward(loss, data, logprobs);
    let masked = 0;
    data.forEach((d, i) => {
      const w = d.loss_fn_inputs.weights as Float64Array;
      w.forEach((m, j) => {
        if (m === 0) {
          expect(grads[i]![j] === 0).toBe(true); // +0 or -0
          masked++;
        }
      });
    });
    expect(masked).toBeGreaterThan(0);
  });

  it('masked tokens do not move the loss either', () => {
    const { data, logprobs } = randomRollouts(4, { withRef: true });
    const moved = logprobs.map((v, i) =>
      v.map((x, j) => ((data[i]!.loss_fn_inputs.weights as Float64Array)[j] === 0 ? x - 5 : x)),
    );
    expect(forward(grpoLoss(), data, moved).loss).toBe(forward(grpoLoss(), data, logprobs).loss);
  });
});

describe('sum and token-mean aggregation relate by the token count', () => {
  it.each([
    ['grpo', (aggregation: 'sum' | 'token-mean') => grpoLoss({ aggregation })],
    ['cispo', (aggregation: 'sum' | 'token-mean') => cispoLoss({ aggregation })],
  ] as const)('%s', (_name, make) => {
    const { data, logprobs } = randomRollouts(5, { withRef: true, datums: 5 });
    const sum = forwardBackward(make('sum'), data, logprobs);
    const mean = forwardBackward(make('token-mean'), data, logprobs);
    const tokens = sum.metrics['active_tokens:sum']!;
    expect(tokens).toBeGreaterThan(5);
    expect(mean.loss * tokens).toBeCloseTo(sum.loss, 12);
    expect(mean.metrics['loss:mean']).toBe(mean.loss);
    expect(mean.metrics['loss:sum']).toBeCloseTo(sum.loss, 12);
    expectVectorsClose(mean.grads, sum.grads, 12, tokens);
  });

  it('seq-mean-token-mean averages per-sequence means', () => {
    const { data, logprobs } = randomRollouts(6, { datums: 3 });
    const perSeq = data.map((d, i) => {
      const r = forward(gspoLoss(), [d], [logprobs[i]!]);
      return r.loss / r.metrics['active_tokens:sum']!;
    });
    const r = forward(gspoLoss({ aggregation: 'seq-mean-token-mean' }), data, logprobs);
    expect(r.loss).toBeCloseTo(perSeq.reduce((a, b) => a + b) / perSeq.length, 13);
  });
});

describe('DPO is symmetric under swapping chosen and rejected, with a sign flip', () => {
  const r = rng(7);
  const seq = (tail: number) => [1, 2, 3, tail, tail + 1];
  const data: LossDatum[] = [seq(10), seq(20)].map((t) => ({
    model_input: t.slice(0, -1),
    loss_fn_inputs: { target_tokens: t.slice(1), ref_logprobs: uniform(r, 4, -3, -0.1) },
  }));
  const lps = [uniform(r, 4, -3, -0.1), uniform(r, 4, -3, -0.1)];
  const beta = 0.2;
  const a = forwardBackward(dpoLoss({ beta }), data, lps);
  const b = forwardBackward(dpoLoss({ beta }), [data[1]!, data[0]!], [lps[1]!, lps[0]!]);

  it('flips the margin, the rewards and the accuracy', () => {
    const m = a.metrics['margin:mean']!;
    expect(b.metrics['margin:mean']).toBeCloseTo(-m, 14);
    expect(b.metrics['chosen_reward:mean']).toBeCloseTo(a.metrics['rejected_reward:mean']!, 14);
    expect(b.metrics['accuracy:mean']).toBe(1 - a.metrics['accuracy:mean']!);
  });

  it('-log σ(-βm) = -log σ(βm) + βm, and the gradients differ by β on the response', () => {
    const m = a.metrics['margin:mean']!;
    expect(b.loss).toBeCloseTo(a.loss + beta * m, 13);
    // Response starts at token 3 (common prefix 3): logprob index 2 onwards.
    for (const [sa, sb] of [
      [0, 1],
      [1, 0],
    ] as const) {
      const sign = sa === 0 ? 1 : -1;
      a.grads[sa]!.forEach((g, j) => {
        const expected = j >= 2 ? g + sign * beta : 0;
        expect(b.grads[sb]![j]).toBeCloseTo(expected, 13);
      });
    }
    // Within a pair the gradient is antisymmetric: d/dπc = -d/dπr on the response.
    expectVectorsClose([a.grads[0]!], [a.grads[1]!], 14, -1);
  });
});

describe('metrics', () => {
  it('ppo_kl is 0 on-policy and ref_kld is the k3 mean over active tokens', () => {
    const { data, logprobs } = randomRollouts(8, { withRef: true, spread: 0 });
    const m = forward(grpoLoss(), data, logprobs).metrics;
    expect(m['ppo_kl:mean']).toBe(0);
    expect(m['ppo_ratio:mean']).toBe(1);
    let kSum = 0;
    let n = 0;
    data.forEach((d, i) => {
      const w = d.loss_fn_inputs.weights as Float64Array;
      const active = Array.from(w).filter((x) => x > 0.5).length;
      kSum += refKld(logprobs[i]!, d.loss_fn_inputs.ref_logprobs as Float64Array, w) * active;
      n += active;
    });
    expect(m['ref_kld:mean']).toBeCloseTo(kSum / n, 14);
    expect(m['tis/weight:mean']).toBeGreaterThan(0);
    expect(m['tis/clip_frac:mean']).toBe(0);
  });

  it('ppo_kl off-policy matches the estimator', () => {
    const { data, logprobs } = randomRollouts(9, { spread: 0.1, datums: 1 });
    const d = data[0]!;
    const w = d.loss_fn_inputs.weights as Float64Array;
    const m = forward(dapoLoss(), data, logprobs).metrics;
    expect(m['ppo_kl:mean']).toBeCloseTo(
      ppoKl(logprobs[0]!, d.loss_fn_inputs.old_logprobs as Float64Array, w),
      14,
    );
    expect(m['ppo_kl:mean']).toBeGreaterThan(0);
  });

  it('every metric key is name:reduction', () => {
    const { data, logprobs } = randomRollouts(10, { withRef: true });
    for (const loss of [
      grpoLoss({ tis: { icepopThreshold: 2 } }),
      gspoLoss({ tis: { level: 'sequence' } }),
    ]) {
      for (const key of Object.keys(forward(loss, data, logprobs).metrics)) {
        expect(key).toMatch(/^[a-z_/0-9]+:(sum|mean|min|max)$/);
      }
    }
  });
});

describe('custom loss → cross_entropy backward', () => {
  it('cross_entropy with weights = -dL/dlp has the custom loss gradient', () => {
    const { data, logprobs } = randomRollouts(11, { withRef: true });
    const custom = forwardBackward(grpoLoss(), data, logprobs);
    const ceData = crossEntropyBackwardDatums(data, custom.grads);
    const ce = forwardBackward(builtinLoss('cross_entropy'), ceData, logprobs);
    expect(ce.grads.map((g) => Array.from(g))).toEqual(custom.grads.map((g) => Array.from(g)));
  });
});
