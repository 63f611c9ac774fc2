// The engine against HuggingFace transformers + PEFT (float64 reference): logprobs, every
// parameter gradient of a weighted cross-entropy, the global grad norm, and one AdamW step.
import { describe, expect, it } from 'vitest';
import { buildModel, loadCase, PARITY_CASES, relativeError } from './parity-fixtures.js';

const TOL = 1e-5;

describe.each(PARITY_CASES)('parity with PyTorch: %s', (name) => {
  const c = loadCase(name);
  const weights = c.sequences.flatMap((s) => s.weights);
  const exp = (key: string) => {
    const t = c.expected.get(key);
    if (!t) throw new Error(`fixture ${name} lacks ${key}`);
    return t.data;
  };

  it('logprobs and loss', () => {
    const model = buildModel(name);
    const logprobs = model.forward(c.sequences);
    expect(relativeError(logprobs, exp('logprobs'))).toBeLessThan(TOL);
  });

  it('gradients of every trainable tensor, grad norm, one AdamW step', () => {
    const model = buildModel(name);
    const { loss } = model.forwardBackwardCrossEntropy(c.sequences, weights);
    expect(Math.abs(loss - exp('loss')[0]!)).toBeLessThan(
      TOL * Math.max(1, Math.abs(exp('loss')[0]!)),
    );
    const trainable = model.trainableNames();
    const expectedGrads = [...c.expected.keys()]
      .filter((k) => k.startsWith('grad.'))
      .map((k) => k.slice(5));
    expect(new Set(trainable)).toEqual(new Set(expectedGrads));
    for (const t of trainable) {
      const err = relativeError(model.getGrad(t)!, exp(`grad.${t}`));
      expect(err, `grad ${t}`).toBeLessThan(TOL);
    }
    expect(Math.abs(model.gradNorm() - exp('grad_norm')[0]!) / exp('grad_norm')[0]!).toBeLessThan(
      TOL,
    );
    const a = c.adam;
    model.optimStep({
      learningRate: a.lr,
      beta1: a.beta1,
      beta2: a.beta2,
      eps: a.eps,
      weightDecay: a.weight_decay,
      gradClipNorm: a.grad_clip,
    });
    for (const t of trainable) {
      const err = relativeError(model.getTensor(t), exp(`adam.${t}`));
      expect(err, `adam ${t}`).toBeLessThan(TOL);
    }
  });
});
