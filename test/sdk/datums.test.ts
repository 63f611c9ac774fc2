import { describe, expect, it } from 'vitest';
import {
  conversationTrainingDatum,
  datumFromModelInputWeights,
  ModelInput,
  nextTokenDatum,
  targetTokenDatum,
  truncateSequence,
} from '../../src/sdk/index.js';
import { createByteTokenizer, getRenderer } from '../../src/tokenizers/index.js';

describe('datum builders', () => {
  const tokens = [10, 11, 12, 13, 14];
  const weights = [0, 0, 1, 1, 1];

  it('weight-based: the whole sequence as input, weights in target coordinates', () => {
    const d = datumFromModelInputWeights(ModelInput.fromInts(tokens), weights);
    expect(ModelInput.toInts(d.modelInput)).toEqual(tokens);
    expect(d.lossFnInputs).toEqual({ weights: [0, 1, 1, 1] });
  });

  it('target-token: shifted inputs and targets, optional weights', () => {
    expect(targetTokenDatum(tokens)).toEqual({
      modelInput: ModelInput.fromInts([10, 11, 12, 13]),
      lossFnInputs: { target_tokens: [11, 12, 13, 14] },
    });
    expect(targetTokenDatum(tokens, { weights }).lossFnInputs).toEqual({
      target_tokens: [11, 12, 13, 14],
      weights: [0, 1, 1, 1],
    });
  });

  it('truncation keeps the first maxLength tokens for every builder', () => {
    expect(truncateSequence(tokens, weights, 3)).toEqual({
      tokens: [10, 11, 12],
      weights: [0, 0, 1],
    });
    expect(truncateSequence(tokens, weights, 99)).toEqual({ tokens, weights });
    expect(nextTokenDatum(tokens, weights, { maxLength: 3 })).toEqual({
      tokens: [10, 11],
      targets: [11, 12],
      weights: [0, 1],
    });
    expect(
      ModelInput.toInts(datumFromModelInputWeights(tokens, weights, { maxLength: 4 }).modelInput),
    ).toEqual([10, 11, 12, 13]);
    expect(targetTokenDatum(tokens, { maxLength: 2 }).lossFnInputs).toEqual({
      target_tokens: [11],
    });
  });

  it('conversations go through the renderer: assistant tokens carry the weight', () => {
    const renderer = getRenderer('simple', createByteTokenizer());
    const d = conversationTrainingDatum(renderer, [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'yo' },
    ]);
    const w = d.lossFnInputs.weights as number[];
    const targets = d.lossFnInputs.target_tokens as number[];
    const trained = targets.filter((_, i) => w[i] === 1);
    expect(createByteTokenizer().decode(trained)).toBe(' yo<|endoftext|>');
  });

  it('refuses bad input with clear errors', () => {
    expect(() => truncateSequence([1, 2], [1], undefined)).toThrow(/2 tokens but 1 weights/);
    expect(() => targetTokenDatum(tokens, { maxLength: 1 })).toThrow(
      /maxLength must be an integer >= 2/,
    );
    expect(() => datumFromModelInputWeights([1], [1])).toThrow(/at least two tokens/);
  });
});
