// The engine against HuggingFace transformers + PEFT (float64 reference): logprobs, every
// parameter gradient of a weighted cross-entropy, the global grad norm, and one AdamW step.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseHfConfig } from '../../src/engine/config.js';
import {
  buildModel,
  loadCase,
  PARITY_CASES,
  PARITY_DIR,
  relativeError,
} from './parity-fixtures.js';

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
    const err = relativeError(logprobs, exp('logprobs'));
    console.log(JSON.stringify({ parity: name, logprobs_max_rel_err: err }));
    expect(err).toBeLessThan(TOL);
  });

  it('the config as transformers 5 writes it (rope_parameters) is the same model, bit for bit', () => {
    const read = (f: string) =>
      parseHfConfig(JSON.parse(readFileSync(join(PARITY_DIR, name, f), 'utf8')));
    const v5 = JSON.parse(
      readFileSync(join(PARITY_DIR, name, 'config.transformers5.json'), 'utf8'),
    );
    expect(v5.rope_parameters).toBeDefined();
    expect(read('config.transformers5.json')).toEqual(read('config.json'));
    const a = buildModel(name, 1, 'config.json').forward(c.sequences);
    const b = buildModel(name, 1, 'config.transformers5.json').forward(c.sequences);
    expect(b).toEqual(a);
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
    let worst = 0;
    for (const t of trainable) {
      const err = relativeError(model.getGrad(t)!, exp(`grad.${t}`));
      worst = Math.max(worst, err);
      expect(err, `grad ${t}`).toBeLessThan(TOL);
    }
    console.log(JSON.stringify({ parity: name, grad_max_rel_err: worst }));
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
