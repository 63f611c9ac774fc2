// Every loss on random inputs: float64 finite-difference gradient checks, and the fused
// kernels against the plain reference implementations (same value, same gradient).
import { describe, expect, it } from 'vitest';
import {
  addAll,
  buildDistillationDatums,
  builtinLoss,
  cispoLoss,
  dapoLoss,
  distillationLoss,
  div,
  dot,
  dpoLoss,
  droLoss,
  forwardBackward,
  gradients,
  grpoLoss,
  gspoLoss,
  importanceSamplingLoss,
  type LossDatum,
  type LossFn,
  logsigmoid,
  mul,
  neg,
  orpoLoss,
  param,
  reinforceLoss,
  rlMethodLoss,
  sftLoss,
  sub,
  type Vector,
} from '../../src/losses/index.js';
import { expectGradientsMatch, randomRollouts, rng, uniform } from './helpers.js';
import {
  type RefTis,
  refCispo,
  refDro,
  refGspo,
  refIs,
  refPpoClip,
  refReinforce,
} from './reference.js';

type Ref = (
  data: readonly LossDatum[],
  lps: readonly Vector[],
  frozen?: readonly Float64Array[],
) => Vector;

/** A LossFn over a reference implementation (frozen: detached terms fixed at these logprobs). */
const asLoss =
  (ref: Ref, frozen?: readonly Float64Array[]): LossFn =>
  (data, lps) => ({ loss: ref(data, lps, frozen), metrics: {} });

function expectMatchesReference(loss: LossFn, ref: Ref, data: LossDatum[], lps: Float64Array[]) {
  const fused = forwardBackward(loss, data, lps);
  const leaves = lps.map((v) => param(v.slice()));
  const refLoss = ref(data, leaves);
  const refGrads = gradients(refLoss, leaves);
  expect(Math.abs(fused.loss - refLoss.item())).toBeLessThan(1e-12 * (1 + Math.abs(fused.loss)));
  fused.grads.forEach((g, i) => {
    g.forEach((v, j) => {
      expect(Math.abs(v - refGrads[i]![j]!)).toBeLessThan(1e-12 * (1 + Math.abs(v)));
    });
  });
}

const TIS: RefTis = { cap: 5, level: 'token' };

interface PolicyCase {
  name: string;
  loss: LossFn;
  ref: Ref;
  /** The loss has stop-gradients: difference the reference frozen at the base point. */
  stopGradient?: boolean;
  opts?: Parameters<typeof randomRollouts>[1];
}

const policyCases: PolicyCase[] = [
  {
    name: 'GRPO token TIS + k3 KL',
    loss: grpoLoss(),
    ref: (d, l) => refPpoClip(d, l, { lo: 0.8, hi: 1.2, beta: 0.001, tis: TIS }),
    opts: { withRef: true },
  },
  {
    name: 'GRPO strong KL, asymmetric clip, per-token advantages',
    loss: grpoLoss({ klBeta: 0.3, epsClipHigh: 0.28 }),
    ref: (d, l) => refPpoClip(d, l, { lo: 0.8, hi: 1.28, beta: 0.3, tis: TIS }),
    opts: { withRef: true, perTokenAdvantages: true },
  },
  {
    name: 'GRPO sequence-level TIS',
    loss: grpoLoss({ tis: { level: 'sequence', cap: 1.1 } }),
    ref: (d, l) =>
      refPpoClip(d, l, { lo: 0.8, hi: 1.2, beta: 0.001, tis: { cap: 1.1, level: 'sequence' } }),
    opts: { withRef: true },
  },
  {
    name: 'GRPO IcePop',
    loss: grpoLoss({ tis: { icepopThreshold: 1.15 } }),
    ref: (d, l) =>
      refPpoClip(d, l, {
        lo: 0.8,
        hi: 1.2,
        beta: 0,
        tis: { cap: 5, level: 'token', icepop: 1.15 },
      }),
  },
  {
    name: 'GRPO without TIS or old logprobs',
    loss: grpoLoss({ tis: null }),
    ref: (d, l) => refPpoClip(d, l, { lo: 0.8, hi: 1.2, beta: 0.001, tis: null }),
    opts: { withOld: false, withRef: true, spread: 0 },
  },
  {
    name: 'DAPO',
    loss: dapoLoss(),
    ref: (d, l) => refPpoClip(d, l, { lo: 0.8, hi: 1.28, beta: 0, tis: TIS }),
  },
  {
    name: 'DAPO dual clip',
    loss: dapoLoss({ epsClipC: 1.3 }),
    ref: (d, l) => refPpoClip(d, l, { lo: 0.8, hi: 1.28, beta: 0, dualClip: 1.3, tis: TIS }),
    opts: { perTokenAdvantages: true, spread: 1 },
  },
  {
    name: 'GSPO',
    loss: gspoLoss(),
    ref: (d, l, f) => refGspo(d, l, { lo: 0.8, hi: 1.2, cap: 10, tis: TIS }, f),
    stopGradient: true,
    opts: { spread: 0.8 },
  },
  {
    name: 'GSPO per-token advantages, sequence TIS',
    loss: gspoLoss({ tis: { level: 'sequence' } }),
    ref: (d, l, f) =>
      refGspo(d, l, { lo: 0.8, hi: 1.2, cap: 10, tis: { cap: 5, level: 'sequence' } }, f),
    stopGradient: true,
    opts: { perTokenAdvantages: true, spread: 0.3 },
  },
  {
    name: 'CISPO',
    loss: cispoLoss(),
    ref: (d, l, f) => refCispo(d, l, { lo: 0.8, hi: 1.28, tis: TIS }, f),
    stopGradient: true,
  },
  {
    name: 'DRO',
    loss: droLoss({ beta: 0.2 }),
    ref: (d, l) => refDro(d, l, { beta: 0.2, tis: TIS }),
    opts: { perTokenAdvantages: true },
  },
  {
    name: 'importance sampling',
    loss: importanceSamplingLoss(),
    ref: (d, l) => refIs(d, l, { tis: TIS }),
  },
  {
    name: 'REINFORCE with detached KL',
    loss: reinforceLoss({ klBeta: 0.1 }),
    ref: (d, l, f) => refReinforce(d, l, { beta: 0.1 }, f),
    stopGradient: true,
    opts: { withRef: true },
  },
];

describe('policy losses', () => {
  describe.each(policyCases)('$name', (c) => {
    const seeds = [11, 12, 13];
    it.each(seeds)('matches finite differences (seed %i)', (seed) => {
      const { data, logprobs } = randomRollouts(seed, c.opts);
      expectGradientsMatch(c.loss, data, logprobs, {
        numericLoss: c.stopGradient ? asLoss(c.ref, logprobs) : undefined,
      });
    });
    it.each(seeds)('fused kernel equals the reference (seed %i)', (seed) => {
      const { data, logprobs } = randomRollouts(seed, c.opts);
      expectMatchesReference(c.loss, c.ref, data, logprobs);
    });
  });
});

describe('managed RFT methods', () => {
  it.each([
    ['grpo', { withRef: true }],
    ['dapo', {}],
  ] as const)('%s (token-mean) matches finite differences', (method, opts) => {
    const { data, logprobs } = randomRollouts(21, { ...opts, datums: 4 });
    expectGradientsMatch(rlMethodLoss({ method }), data, logprobs);
  });

  it('gspo-token is the GSPO reference scaled by 1/(sequences · active tokens)', () => {
    // Ratios within the tight [1-3e-4, 1+4e-4] clip, so the gradient is not all zero.
    const { data, logprobs } = randomRollouts(22, { spread: 1e-4, datums: 4 });
    const fused = forwardBackward(rlMethodLoss({ method: 'gspo-token' }), data, logprobs);
    const reference = asLoss((d, l) =>
      refGspo(d, l, { lo: 1 - 3e-4, hi: 1 + 4e-4, cap: 10, tis: TIS }),
    );
    let nonZero = 0;
    data.forEach((d, i) => {
      const active = Array.from(d.loss_fn_inputs.weights as Float64Array).filter((m) => m > 0.5);
      const single = forwardBackward(reference, [d], [logprobs[i]!]);
      single.grads[0]!.forEach((g, j) => {
        const expected = g / (data.length * active.length);
        expect(Math.abs(fused.grads[i]![j]! - expected)).toBeLessThan(1e-13);
        if (expected !== 0) nonZero++;
      });
    });
    expect(nonZero).toBeGreaterThan(0);
  });
});

/** Built-in datums: target_tokens, sampling logprobs, per-token advantages (mask folded in). */
function builtinRollouts(seed: number) {
  const { data, logprobs } = randomRollouts(seed, { perTokenAdvantages: true });
  return {
    logprobs,
    data: data.map((d) => {
      const i = d.loss_fn_inputs;
      const w = i.weights as Float64Array;
      return {
        loss_fn_inputs: {
          target_tokens: i.target_tokens,
          logprobs: i.old_logprobs,
          advantages: (i.advantages as Float64Array).map((a, j) => a * w[j]!),
        },
      } satisfies LossDatum;
    }),
  };
}

describe('built-in losses', () => {
  it.each([
    ['importance_sampling', {}],
    ['importance_sampling', { ratio_log_cap: 0.3 }],
    ['ppo', {}],
    ['ppo', { clip_low_threshold: 0.9, clip_high_threshold: 1.1, ratio_log_cap: 5 }],
    ['dro', { beta: 0.3 }],
  ] as const)('%s %j matches finite differences', (name, config) => {
    const { data, logprobs } = builtinRollouts(31);
    expectGradientsMatch(builtinLoss(name, config), data, logprobs);
  });

  it('cispo has the stop-gradient weight as its gradient', () => {
    const { data, logprobs } = builtinRollouts(32);
    const { grads } = forwardBackward(builtinLoss('cispo'), data, logprobs);
    data.forEach((d, i) => {
      const q = d.loss_fn_inputs.logprobs as Float64Array;
      const a = d.loss_fn_inputs.advantages as Float64Array;
      logprobs[i]!.forEach((lp, j) => {
        const rc = Math.min(1.2, Math.max(0.8, Math.exp(lp - q[j]!)));
        expect(grads[i]![j]).toBeCloseTo(-rc * a[j]!, 14);
      });
    });
  });

  it('cross_entropy 1-D with real (also negative) weights', () => {
    const r = rng(33);
    const lp = [uniform(r, 7, -4, 0), uniform(r, 3, -4, 0)];
    const data: LossDatum[] = lp.map((v) => ({
      loss_fn_inputs: {
        target_tokens: Array.from(v, (_, j) => j),
        weights: uniform(r, v.length, -1, 2),
      },
    }));
    expectGradientsMatch(builtinLoss('cross_entropy'), data, lp);
  });

  it('cross_entropy 2-D top-K targets', () => {
    const r = rng(34);
    const [n, k] = [5, 3];
    const lp = [uniform(r, n * k, -6, 0)];
    const data: LossDatum[] = [
      {
        loss_fn_inputs: {
          target_tokens: { data: Array.from({ length: n * k }, (_, j) => j), shape: [n, k] },
          weights: { data: uniform(r, n * k, 0, 1), shape: [n, k] },
        },
      },
    ];
    expectGradientsMatch(builtinLoss('cross_entropy'), data, lp);
    const out = forwardBackward(builtinLoss('cross_entropy'), data, lp);
    expect(out.loss_fn_outputs[0]!.logprobs.shape).toEqual([n, k]);
  });
});

/** Preference pairs sharing a 3-token prompt, with reference logprobs. */
function preferencePairs(seed: number, pairs = 2) {
  const r = rng(seed);
  const data: LossDatum[] = [];
  const logprobs: Float64Array[] = [];
  for (let p = 0; p < pairs; p++) {
    for (const side of [0, 1]) {
      const n = 5 + side + p;
      const tokens = Array.from({ length: n + 1 }, (_, j) => (j < 3 ? j : 100 * (side + 1) + j));
      data.push({
        model_input: tokens.slice(0, -1),
        loss_fn_inputs: { target_tokens: tokens.slice(1), ref_logprobs: uniform(r, n, -3, -0.1) },
      });
      logprobs.push(uniform(r, n, -3, -0.1));
    }
  }
  return { data, logprobs };
}

describe('supervised and preference losses', () => {
  it('SFT with datum weights', () => {
    const { data, logprobs } = randomRollouts(41);
    expectGradientsMatch(sftLoss(), data, logprobs);
  });
  it('SFT with prompt lengths', () => {
    const { data, logprobs } = randomRollouts(42);
    expectGradientsMatch(sftLoss({ promptLens: [2, 3, 1] }), data, logprobs);
  });
  it('DPO', () => {
    const { data, logprobs } = preferencePairs(43);
    expectGradientsMatch(dpoLoss({ beta: 0.3 }), data, logprobs);
  });
  it('ORPO', () => {
    const { data, logprobs } = preferencePairs(44);
    expectGradientsMatch(orpoLoss({ lambda: 0.7 }), data, logprobs);
  });
  it('distillation (importance sampling on reverse-KL advantages)', () => {
    const { data, logprobs } = randomRollouts(45);
    const r = rng(46);
    const teacher = logprobs.map((v) => uniform(r, v.length, -3, -0.1));
    const { datums } = buildDistillationDatums(data, teacher, [2, 2, 2], { scale: 1.5 });
    expectGradientsMatch(distillationLoss(), datums, logprobs);
  });
});

describe("the seed's custom losses, written with the autodiff", () => {
  const weightsOf = (d: LossDatum) => d.loss_fn_inputs.weights as Float64Array;
  it('simple cross-entropy (dot with weights, mean over datums)', () => {
    const ce: LossFn = (data, lps) => {
      const loss = div(neg(addAll(lps.map((lp, i) => dot(lp, weightsOf(data[i]!))))), lps.length);
      return { loss, metrics: { cross_entropy: loss.item() } };
    };
    const { data, logprobs } = randomRollouts(51);
    expectGradientsMatch(ce, data, logprobs);
    expect(Object.keys(forwardBackward(ce, data, logprobs).metrics)).toEqual([
      'cross_entropy:mean',
    ]);
  });
  it('GRPO with a k1 KL penalty', () => {
    const { data, logprobs } = randomRollouts(52, { withRef: true });
    const advantages = [0.5, -1, 1.5];
    const grpo: LossFn = (d, lps) => {
      const terms = lps.map((pi, i) => {
        const w = weightsOf(d[i]!);
        const ref = d[i]!.loss_fn_inputs.ref_logprobs as Float64Array;
        const pg = mul(dot(pi, w), -advantages[i]!);
        return addAll([pg, mul(dot(sub(pi, ref), w), 0.001)]);
      });
      return { loss: div(addAll(terms), lps.length), metrics: {} };
    };
    expectGradientsMatch(grpo, data, logprobs);
  });
  it('DPO margin loss', () => {
    const { data, logprobs } = preferencePairs(53, 1);
    const dpo: LossFn = (d, lps) => {
      const refC = d[0]!.loss_fn_inputs.ref_logprobs as Float64Array;
      const refR = d[1]!.loss_fn_inputs.ref_logprobs as Float64Array;
      const margin = sub(
        sub(
          dot(lps[0]!, new Float64Array(refC.length).fill(1)),
          refC.reduce((a, b) => a + b),
        ),
        sub(
          dot(lps[1]!, new Float64Array(refR.length).fill(1)),
          refR.reduce((a, b) => a + b),
        ),
      );
      return { loss: neg(logsigmoid(mul(margin, 0.1))), metrics: { margin: margin.item() } };
    };
    expectGradientsMatch(dpo, data, logprobs);
  });
});
