/** SFT rows: something to train on, root weights, and which conversations unroll. */
import { describe, expect, it } from 'vitest';
import {
  needsThinkingUnroll,
  parseDataset,
  sftExampleCount,
  validateDataset,
} from '../../src/datasets/index.js';
import type { MessageInput } from '../../src/tokenizers/index.js';
import { assistant, chat, jsonl, user, validationError } from './helpers.js';

describe('SFT examples', () => {
  it('need an assistant message to train on', () => {
    const noAssistant = validationError(() =>
      validateDataset('sft', jsonl(chat(), chat(), { messages: [user('hello')] })),
    );
    expect(noAssistant.code).toBe('no_trainable_assistant');
    expect(noAssistant.message).toBe(
      'Dataset validation failed: the example has no assistant message to train on (it needs at least one assistant message without weight 0) on line 3',
    );
    const allSilenced = validationError(() =>
      validateDataset(
        'sft',
        jsonl({ messages: [user('a'), assistant('b', { weight: 0 })] }, chat(), chat()),
      ),
    );
    expect(allSilenced.code).toBe('no_trainable_assistant');
    expect(allSilenced.line).toBe(1);
  });

  it('take a root weight of any sign, 0 included', () => {
    const text = jsonl(
      chat('a', 'b', { weight: 2.5 }),
      chat('c', 'd', { weight: -1 }),
      chat('e', 'f', { weight: 0 }),
    );
    const parsed = parseDataset('sft', text);
    expect(parsed.rows.map((r) => r.weight)).toEqual([2.5, -1, 0]);
    expect(parsed.summary.exampleWeights).toBe(true);
  });

  it('refuse a root weight that is not a number', () => {
    const err = validationError(() =>
      validateDataset(
        'sft',
        jsonl(chat('a', 'b', { weight: 1 }), chat('c', 'd', { weight: 'high' }), chat()),
      ),
    );
    expect(err.code).toBe('invalid_example_weight');
    expect(err.message).toBe(
      'Dataset validation failed: weight must be a number (a loss multiplier for the whole example; got "high") on line 2',
    );
    const nullWeight = validationError(() =>
      validateDataset('sft', jsonl(chat('a', 'b', { weight: null }))),
    );
    expect(nullWeight.code).toBe('invalid_example_weight');
  });

  it('must all have a root weight when one has (the first offending line is named)', () => {
    const missing = validationError(() =>
      validateDataset(
        'sft',
        jsonl(chat('a', 'b', { weight: 1 }), '', chat('c', 'd', { weight: 0.5 }), chat(), chat()),
      ),
    );
    expect(missing.code).toBe('mixed_example_weights');
    expect(missing.line).toBe(4);
    expect(missing.message).toBe(
      "Dataset validation failed: root 'weight' is missing but line 1 has one (if one example has a root 'weight', every example must) on line 4",
    );
    const extra = validationError(() =>
      validateDataset('sft', jsonl(chat(), chat(), chat('a', 'b', { weight: 2 }))),
    );
    expect(extra.code).toBe('mixed_example_weights');
    expect(extra.message).toBe(
      "Dataset validation failed: root 'weight' is set but line 1 has none (if one example has a root 'weight', every example must) on line 3",
    );
  });
});

describe('thinking unroll', () => {
  const thinking: MessageInput[] = [
    { role: 'user', content: 'What is 1+1?' },
    { role: 'assistant', content: '2', reasoning_content: 'Simple arithmetic: 1+1=2.' },
    { role: 'user', content: 'Now what is 2+2?' },
    { role: 'assistant', content: '4', reasoning_content: 'Following up: 2+2=4.' },
  ];

  it('applies when an assistant turn before the last carries reasoning', () => {
    expect(needsThinkingUnroll(thinking)).toBe(true);
    expect(sftExampleCount(thinking)).toBe(2);
  });

  it('does not apply to reasoning on the last turn only, or to no reasoning', () => {
    const lastOnly = thinking.map((m, i) =>
      i === 1 ? { role: 'assistant' as const, content: '2' } : m,
    );
    expect(needsThinkingUnroll(lastOnly)).toBe(false);
    expect(sftExampleCount(lastOnly)).toBe(1);
    expect(needsThinkingUnroll([thinking[0]!, { role: 'assistant', content: 'x' }])).toBe(false);
  });

  it('yields one example per trained assistant turn (weight 0 turns yield none)', () => {
    const silenced = thinking.map((m, i) => (i === 1 ? { ...m, weight: 0 as const } : m));
    expect(sftExampleCount(silenced)).toBe(1);
  });

  it('is counted in the summary', () => {
    const summary = validateDataset('sft', jsonl({ messages: thinking }, chat(), chat()));
    expect(summary.exampleCount).toBe(3);
    expect(summary.trainingExamples).toBe(4);
    expect(summary.examplesWithReasoning).toBe(1);
  });
});
