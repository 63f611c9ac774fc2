// Bad input fails with a typed error that names the datum and the field, and changes nothing.
import { describe, expect, it } from 'vitest';
import {
  alignCompletionLogprobs,
  builtinLoss,
  dapoLoss,
  dpoLoss,
  forward,
  forwardBackward,
  grpoLoss,
  type LossDatum,
  LossError,
  type LossFn,
  log,
  parseLossDatums,
  reinforceLoss,
  resolveRlLossMethod,
  rolloutSampleToDatum,
  sum,
  tisConfigSchema,
  where,
} from '../../src/losses/index.js';
import { randomRollouts } from './helpers.js';

function thrown(f: () => unknown): LossError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(LossError);
    return e as LossError;
  }
  throw new Error('expected a LossError');
}

const rlDatum = (inputs: Record<string, unknown>): LossDatum => ({
  loss_fn_inputs: {
    target_tokens: [1, 2, 3],
    weights: [0, 1, 1],
    logprobs: [0, -1, -2],
    advantages: [1],
    ...inputs,
  } as LossDatum['loss_fn_inputs'],
});

describe('per-datum input errors name the datum and the field', () => {
  const lp = [-1, -1, -1];

  it('length mismatch of weights', () => {
    const e = thrown(() =>
      forward(grpoLoss(), [rlDatum({}), rlDatum({ weights: [1, 1] })], [lp, lp]),
    );
    expect(e.code).toBe('invalid_loss_input');
    expect([e.datum, e.field]).toEqual([1, 'weights']);
    expect(e.message).toBe(
      'datum 1: loss_fn_inputs.weights has 2 values, expected 3 (one per logprob of the datum)',
    );
    expect([e.httpStatus, e.grpcStatus]).toEqual([400, 3]);
  });

  it('length mismatch of advantages, old and ref logprobs', () => {
    expect(thrown(() => forward(grpoLoss(), [rlDatum({ advantages: [1, 2] })], [lp])).field).toBe(
      'advantages',
    );
    expect(thrown(() => forward(grpoLoss(), [rlDatum({ old_logprobs: [1] })], [lp])).field).toBe(
      'old_logprobs',
    );
    expect(
      thrown(() => forward(grpoLoss(), [rlDatum({ ref_logprobs: [1, 2, 3, 4] })], [lp])).field,
    ).toBe('ref_logprobs');
  });

  it('missing or empty rollout logprobs', () => {
    for (const logprobs of [undefined, []]) {
      const e = thrown(() => forward(dapoLoss(), [rlDatum({}), rlDatum({ logprobs })], [lp, lp]));
      expect(e.message).toMatch(/^DAPO requires rollout_logprobs for datum 1/);
      expect([e.datum, e.field]).toEqual([1, 'logprobs']);
    }
  });

  it('missing advantages and missing mask', () => {
    expect(
      thrown(() => forward(grpoLoss(), [rlDatum({ advantages: undefined })], [lp])).field,
    ).toBe('advantages');
    const e = thrown(() => forward(grpoLoss(), [rlDatum({ weights: undefined })], [lp]));
    expect(e.message).toMatch(/GRPO needs a loss mask/);
  });

  it('accepts `mask` when `weights` is absent', () => {
    const d = rlDatum({ weights: undefined, mask: [0, 1, 1] });
    expect(forward(grpoLoss(), [d], [lp]).metrics['active_tokens:sum']).toBe(2);
  });

  it('non-finite values in inputs and logprobs', () => {
    const e = thrown(() =>
      forward(grpoLoss(), [rlDatum({ old_logprobs: [0, Number.NaN, 0] })], [lp]),
    );
    expect(e.message).toBe(
      'datum 0: loss_fn_inputs.old_logprobs[1] is NaN; every value must be finite',
    );
    const e2 = thrown(() =>
      forward(grpoLoss(), [rlDatum({}), rlDatum({})], [lp, [-1, -Infinity, -1]]),
    );
    expect([e2.datum, e2.field]).toEqual([1, 'logprobs']);
    expect(e2.message).toMatch(/logprobs\[1\] is -Infinity/);
  });

  it('one logprob vector per datum', () => {
    expect(thrown(() => forward(grpoLoss(), [rlDatum({})], [lp, lp])).message).toMatch(
      /1 datums but 2 logprob vectors/,
    );
  });

  it('REINFORCE with a KL needs reference logprobs', () => {
    expect(thrown(() => forward(reinforceLoss({ klBeta: 0.1 }), [rlDatum({})], [lp])).field).toBe(
      'ref_logprobs',
    );
  });

  it('leaves the inputs untouched', () => {
    const { data, logprobs } = randomRollouts(1, { withRef: true });
    const before = JSON.stringify([data, logprobs.map((v) => Array.from(v))]);
    forwardBackward(grpoLoss(), data, logprobs);
    expect(JSON.stringify([data, logprobs.map((v) => Array.from(v))])).toBe(before);
  });
});

describe('built-in losses check fields', () => {
  it('rejects fields the loss would not read', () => {
    const d: LossDatum = {
      loss_fn_inputs: { target_tokens: [1], logprobs: [0], advantages: [1], mask: [1] },
    };
    const e = thrown(() => forward(builtinLoss('ppo'), [d], [[0]]));
    expect([e.datum, e.field]).toEqual([0, 'mask']);
  });
  it('requires logprobs and advantages', () => {
    const d: LossDatum = { loss_fn_inputs: { target_tokens: [1], advantages: [1] } };
    expect(thrown(() => forward(builtinLoss('importance_sampling'), [d], [[0]])).message).toBe(
      "datum 0: missing required field 'logprobs'",
    );
  });
  it('checks target_tokens against the logprobs', () => {
    const d: LossDatum = { loss_fn_inputs: { target_tokens: [1, 2], weights: [1] } };
    expect(thrown(() => forward(builtinLoss('cross_entropy'), [d], [[0]])).field).toBe(
      'target_tokens',
    );
  });
  it('checks shapes', () => {
    const d: LossDatum = {
      loss_fn_inputs: { target_tokens: { data: [1, 2, 3], shape: [2, 2] }, weights: [1, 1, 1] },
    };
    expect(thrown(() => forward(builtinLoss('cross_entropy'), [d], [[0, 0, 0]])).message).toMatch(
      /shape \[2, 2\] but 3 values/,
    );
  });
  it('unknown names and configs', () => {
    expect(thrown(() => builtinLoss('nope')).code).toBe('unknown_loss');
    expect(thrown(() => builtinLoss('ppo', { clip_low_threshold: 1.5 })).code).toBe(
      'invalid_loss_config',
    );
    expect(thrown(() => builtinLoss('cross_entropy', { beta: 1 })).message).toMatch(/beta/);
    expect(thrown(() => builtinLoss('dro', { beta: -1 })).code).toBe('invalid_loss_config');
  });
});

describe('configuration errors', () => {
  it('DPO β must be in (0, 0.5)', () => {
    for (const beta of [0, 0.5, 0.7, -0.1]) {
      expect(thrown(() => dpoLoss({ beta })).message).toMatch(
        /DPO beta must satisfy 0 < beta < 0\.5/,
      );
    }
    expect(() => dpoLoss({ beta: 0.49 })).not.toThrow();
  });
  it('DAPO dual clip must exceed 1', () => {
    expect(thrown(() => dapoLoss({ epsClipC: 1 })).message).toMatch(/epsClipC must be > 1/);
  });
  it('TIS IcePop is token level only, with threshold >= 1', () => {
    expect(tisConfigSchema.safeParse({ level: 'sequence', icepopThreshold: 2 }).success).toBe(
      false,
    );
    expect(tisConfigSchema.safeParse({ icepopThreshold: 0.5 }).success).toBe(false);
  });
  it('unknown keys are rejected', () => {
    expect(thrown(() => grpoLoss({ eps: 0.2 } as never)).message).toMatch(/eps/);
  });
  it('kl_beta must be >= 0 and methods must exist', () => {
    expect(thrown(() => resolveRlLossMethod({ klBeta: -1 })).message).toBe(
      'loss_config.kl_beta must be >= 0, got -1',
    );
    expect(thrown(() => resolveRlLossMethod({ method: 'ppo' })).message).toMatch(
      /grpo, dapo, gspo-token/,
    );
  });
  it('preference losses need pairs', () => {
    expect(thrown(() => forward(dpoLoss(), [rlDatum({})], [[0, 0, 0]])).message).toMatch(/pairs/);
  });
});

describe('loss outputs', () => {
  const d: LossDatum = { loss_fn_inputs: { target_tokens: [1, 2] } };
  const run = (f: LossFn) => thrown(() => forwardBackward(f, [d], [[0, -1]]));

  it('must be a finite scalar', () => {
    expect(run((_d, lps) => ({ loss: lps[0]!, metrics: {} })).message).toMatch(/scalar/);
    expect(run((_d, lps) => ({ loss: sum(log(lps[0]!)), metrics: {} })).message).toMatch(
      /the loss is NaN/,
    );
  });
  it('must have finite gradients', () => {
    // where() gives the untaken branch a zero gradient, and log's backward turns 0·(1/0) into NaN.
    const e = run((_d, lps) => ({ loss: sum(where([1, 1], 0, log(lps[0]!))), metrics: {} }));
    expect(e.message).toMatch(/d\(loss\)\/d\(logprobs\)\[0\] is NaN/);
    expect(e.datum).toBe(0);
  });
  it('metric keys must carry a known reduction; bare names mean `mean`', () => {
    const ok = forward(
      (_d, lps) => ({ loss: sum(lps[0]!), metrics: { m: 1, 'n:sum': 2 } }),
      [d],
      [[0, -1]],
    );
    expect(ok.metrics).toEqual({ 'm:mean': 1, 'n:sum': 2 });
    expect(run((_d, lps) => ({ loss: sum(lps[0]!), metrics: { 'x:median': 1 } })).code).toBe(
      'invalid_loss_output',
    );
    expect(run((_d, lps) => ({ loss: sum(lps[0]!), metrics: { x: Number.NaN } })).message).toMatch(
      /metric 'x' is NaN/,
    );
  });
});

describe('datum builders', () => {
  it('parse wire datums with zod', () => {
    const ok = parseLossDatums([
      { model_input: [1], loss_fn_inputs: { target_tokens: [2], weights: [1] } },
    ]);
    expect(ok).toHaveLength(1);
    const e = thrown(() => parseLossDatums([{ loss_fn_inputs: { weights: ['x'] } }]));
    expect(e.datum).toBe(0);
    expect(e.field).toBe('weights');
    expect(
      thrown(() => parseLossDatums([{ loss_fn_inputs: { w: { data: [1, 2], shape: [3] } } }]))
        .message,
    ).toMatch(/shape/);
  });
  it('reject unparallel rollouts and misaligned completions', () => {
    expect(
      thrown(() =>
        rolloutSampleToDatum({
          tokens: [1, 2, 3],
          logprobs: [0, 0],
          loss_mask: [0, 1, 1],
          reward: 0,
        }),
      ).field,
    ).toBe('logprobs');
    expect(thrown(() => alignCompletionLogprobs([-1], 3, 5)).message).toMatch(
      /expected 2 completion logprobs/,
    );
  });
});
