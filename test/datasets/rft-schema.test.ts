/** RFT rows: a prompt, optional ground truth, pass-through fields, weights. */
import { describe, expect, it } from 'vitest';
import { parseDataset, validateDataset } from '../../src/datasets/index.js';
import { assistant, jsonl, system, user, validationError } from './helpers.js';

const prompt = (q: string, extra: object = {}) => ({
  messages: [system('You are a math tutor.'), user(q)],
  ...extra,
});

describe('RFT rows', () => {
  it('keep ground_truth (any JSON) and pass other fields through', () => {
    const { rows } = parseDataset(
      'rft',
      jsonl(
        prompt('What is 15 * 23?', { ground_truth: '345', id: 'q1', difficulty: 2 }),
        prompt('Labels?', { ground_truth: ['a', 'b'] }),
        prompt('No truth'),
      ),
    );
    expect(rows[0]).toMatchObject({
      rowIndex: 0,
      line: 1,
      rowId: 'q1',
      groundTruth: '345',
      extra: { id: 'q1', difficulty: 2 },
      weight: undefined,
    });
    expect(rows[1]!.groundTruth).toEqual(['a', 'b']);
    expect(rows[1]!.rowId).toBe('row-1');
    expect(rows[2]!.groundTruth).toBeUndefined();
    expect(rows[2]!.extra).toEqual({});
  });

  it('accept a single prompt (no documented minimum beyond one)', () => {
    expect(validateDataset('rft', jsonl(prompt('x'))).exampleCount).toBe(1);
  });

  it('take root weights, all or none', () => {
    const { rows } = parseDataset(
      'rft',
      jsonl(prompt('a', { weight: 2 }), prompt('b', { weight: -0.5 })),
    );
    expect(rows.map((r) => r.weight)).toEqual([2, -0.5]);
    const err = validationError(() =>
      validateDataset('rft', jsonl(prompt('a', { weight: 2 }), prompt('b'))),
    );
    expect(err.code).toBe('mixed_example_weights');
    expect(err.line).toBe(2);
  });

  it('refuse a prompt ending with an assistant message', () => {
    const err = validationError(() =>
      validateDataset('rft', jsonl(prompt('a'), { messages: [user('2+2?'), assistant('4')] })),
    );
    expect(err.code).toBe('invalid_prompt');
    expect(err.message).toBe(
      'Dataset validation failed: messages[1] is an assistant message; an RFT prompt must end with the turn the model answers (a user, system or tool message) on line 2',
    );
  });

  it("with trailingAssistant 'drop', hand a trailing answer to the evaluator instead", () => {
    const { rows } = parseDataset('rft', jsonl({ messages: [user('2+2?'), assistant('4')] }), {
      trailingAssistant: 'drop',
    });
    expect(rows[0]!.messages).toEqual([user('2+2?')]);
    expect(rows[0]!.extra).toEqual({ reference_message: assistant('4') });
    const onlyAnswer = validationError(() =>
      validateDataset('rft', jsonl({ messages: [assistant('4')] }), { trailingAssistant: 'drop' }),
    );
    expect(onlyAnswer.detail).toBe(
      'messages holds only an assistant message; an RFT prompt needs the turn the model answers',
    );
  });

  it('name a missing messages field', () => {
    const err = validationError(() =>
      validateDataset('rft', jsonl({ prompt: 'hi', ground_truth: 1 })),
    );
    expect(err.message).toBe(
      "Dataset validation failed: Missing required field 'messages' on line 1",
    );
  });
});
