import { describe, expect, it } from 'vitest';
import { tinyModel } from './helpers.js';

const prompt = [3, 14, 15, 9, 2, 6];

describe('sampling with a KV cache', () => {
  const model = tinyModel({ seed: 21 });

  it('greedy decoding equals the argmax of a full forward pass at every step', () => {
    const { samples } = model.sample(prompt, { temperature: 0, maxTokens: 10 });
    const out = samples[0]!;
    expect(out.tokens).toHaveLength(10);
    expect(out.finishReason).toBe('length');
    const seq = [...prompt, ...out.tokens];
    for (let step = 0; step < out.tokens.length; step++) {
      const ctx = seq.slice(0, prompt.length + step);
      // logprob of every vocabulary item at the last position, via targets
      const scores = Array.from({ length: model.config.vocabSize }, (_, v) => {
        const lp = model.forward([{ tokens: ctx, targets: [...ctx.slice(1), v] }]);
        return lp[lp.length - 1]!;
      });
      const argmax = scores.indexOf(Math.max(...scores));
      expect(out.tokens[step]).toBe(argmax);
      expect(out.logprobs[step]).toBeCloseTo(scores[argmax]!, 4);
    }
  });

  it('is reproducible for a seed and varies across seeds and samples', () => {
    const a = model.sample(prompt, { n: 4, maxTokens: 20, temperature: 1, seed: 42 });
    const b = model.sample(prompt, { n: 4, maxTokens: 20, temperature: 1, seed: 42 });
    const c = model.sample(prompt, { n: 4, maxTokens: 20, temperature: 1, seed: 43 });
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(new Set(a.samples.map((s) => s.tokens.join(','))).size).toBeGreaterThan(1);
  });

  it('sampled logprobs equal the training forward on the same tokens', () => {
    const { samples } = model.sample(prompt, {
      n: 2,
      maxTokens: 8,
      temperature: 1.3,
      topP: 0.9,
      seed: 1,
    });
    for (const s of samples) {
      const seq = [...prompt, ...s.tokens];
      const lp = model.forward([{ tokens: seq.slice(0, -1), targets: seq.slice(1) }]);
      const tail = Array.from(lp.slice(prompt.length - 1));
      tail.forEach((x, i) => {
        expect(s.logprobs[i]).toBeCloseTo(x, 4);
      });
    }
  });

  it('top-k = 1 is greedy; stop tokens end a sample with finish reason stop', () => {
    const greedy = model.sample(prompt, { temperature: 0, maxTokens: 6 }).samples[0]!;
    const topk1 = model.sample(prompt, { temperature: 0.7, topK: 1, maxTokens: 6, seed: 9 })
      .samples[0]!;
    expect(topk1.tokens).toEqual(greedy.tokens);
    const stop = greedy.tokens[2]!;
    const stopped = model.sample(prompt, { temperature: 0, maxTokens: 6, stopTokens: [stop] })
      .samples[0]!;
    expect(stopped.finishReason).toBe('stop');
    expect(stopped.tokens).toEqual(greedy.tokens.slice(0, greedy.tokens.indexOf(stop) + 1));
  });

  it('returns prompt logprobs equal to the forward pass', () => {
    const out = model.sample(prompt, { maxTokens: 1, promptLogprobs: true });
    const lp = model.forward([{ tokens: prompt.slice(0, -1), targets: prompt.slice(1) }]);
    expect(out.promptLogprobs![0]).toBeNull();
    lp.forEach((x, i) => {
      expect(out.promptLogprobs![i + 1]).toBeCloseTo(x, 5);
    });
  });

  it('rejects bad parameters with clear messages', () => {
    expect(() => model.sample([], {})).toThrow(/prompt is empty/);
    expect(() => model.sample([999], {})).toThrow(/outside the vocabulary/);
    expect(() => model.sample(prompt, { topP: 0 })).toThrow(/topP/);
    expect(() => model.sample(prompt, { temperature: -1 })).toThrow(/temperature/);
  });
});
