/** DPO rows in both documented shapes, and what makes a pair invalid. */
import { describe, expect, it } from 'vitest';
import { parseDataset, validateDataset } from '../../src/datasets/index.js';
import { assistant, jsonl, system, user, validationError } from './helpers.js';

const einstein = {
  input: { messages: [user('What is Einstein famous for?')], tools: [] },
  preferred_output: [assistant('The theory of relativity, especially E=mc².')],
  non_preferred_output: [assistant('He was a famous scientist.')],
};

const chosenRejected = {
  chosen: { messages: [system('Be brief.'), user('Hi?'), assistant('Hello!')] },
  rejected: { messages: [system('Be brief.'), user('Hi?'), assistant('Greetings, dear user.')] },
};

/** The error for `bad` on line 2 of an otherwise valid file. */
function failOnLine2(bad: unknown) {
  return validationError(() => validateDataset('dpo', jsonl(einstein, bad, einstein)));
}

describe('DPO rows', () => {
  it('parse the input/preferred_output/non_preferred_output shape', () => {
    const { rows, summary } = parseDataset('dpo', jsonl(einstein, einstein, einstein));
    expect(rows[0]).toMatchObject({
      rowIndex: 0,
      line: 1,
      prompt: einstein.input.messages,
      tools: [],
      chosen: einstein.preferred_output[0],
      rejected: einstein.non_preferred_output[0],
    });
    expect(summary).toMatchObject({ kind: 'dpo', exampleCount: 3, trainingExamples: 3 });
  });

  it('parse the chosen/rejected shape into the same form', () => {
    const { rows } = parseDataset('dpo', jsonl(chosenRejected, einstein, chosenRejected));
    expect(rows[0]).toMatchObject({
      prompt: [system('Be brief.'), user('Hi?')],
      chosen: assistant('Hello!'),
      rejected: assistant('Greetings, dear user.'),
    });
  });

  it('keep earlier assistant turns of the prompt as context', () => {
    const multi = {
      ...einstein,
      input: { messages: [user('Hi'), assistant('Hello'), user('Einstein?')] },
    };
    expect(parseDataset('dpo', jsonl(multi, multi, multi)).rows[0]!.prompt).toHaveLength(3);
  });

  const SHAPES =
    '(a DPO example is {input, preferred_output, non_preferred_output} or {chosen, rejected})';
  const cases: [string, unknown, string, string][] = [
    [
      'neither shape',
      { messages: [user('x')] },
      'missing_field',
      `Missing required field 'input' ${SHAPES}`,
    ],
    [
      'no non_preferred_output',
      { input: einstein.input, preferred_output: einstein.preferred_output },
      'missing_field',
      `Missing required field 'non_preferred_output' ${SHAPES}`,
    ],
    [
      'no rejected',
      { chosen: chosenRejected.chosen },
      'missing_field',
      `Missing required field 'rejected' ${SHAPES}`,
    ],
    [
      'input without messages',
      { ...einstein, input: { tools: [] } },
      'missing_field',
      "Missing required field 'input.messages'",
    ],
    [
      'input not an object',
      { ...einstein, input: 'hi' },
      'invalid_field',
      'input must be an object (got "hi")',
    ],
    [
      'prompt ending with an assistant message',
      { ...einstein, input: { messages: [user('a'), assistant('b')] } },
      'invalid_prompt',
      'input.messages ends with an assistant message; the prompt must end with the turn the preferred and non-preferred outputs answer',
    ],
    [
      'two preferred messages',
      { ...einstein, preferred_output: [assistant('a'), assistant('b')] },
      'invalid_preference_pair',
      'preferred_output must be a list with exactly one assistant message (DPO examples have one turn; got 2 messages)',
    ],
    [
      'preferred_output not a list',
      { ...einstein, preferred_output: assistant('a') },
      'invalid_preference_pair',
      'preferred_output must be a list with exactly one assistant message (DPO examples have one turn; got an object)',
    ],
    [
      'non-preferred output from the user',
      { ...einstein, non_preferred_output: [user('a')] },
      'invalid_preference_pair',
      'non_preferred_output[0] must be an assistant message (got role "user")',
    ],
    [
      'bad message inside an output',
      { ...einstein, preferred_output: [{ role: 'assistant', content: 7 }] },
      'invalid_content',
      'preferred_output[0].content must be a string or a list of {"type": "text", "text": "..."} parts (got 7)',
    ],
    [
      'chosen not ending with an assistant message',
      { ...chosenRejected, chosen: { messages: [user('Hi?')] } },
      'invalid_preference_pair',
      'chosen.messages must be a prompt followed by one final assistant message',
    ],
    [
      'chosen and rejected with different prompts',
      {
        chosen: { messages: [user('Hi?'), assistant('Hello!')] },
        rejected: { messages: [user('Hey?'), assistant('Yo.')] },
      },
      'invalid_preference_pair',
      'chosen and rejected must share every message but the last; they differ at messages[0]',
    ],
    [
      'chosen and rejected with different tools',
      {
        chosen: {
          ...chosenRejected.chosen,
          tools: [{ type: 'function', function: { name: 'f' } }],
        },
        rejected: chosenRejected.rejected,
      },
      'invalid_preference_pair',
      'chosen.tools and rejected.tools must be the same',
    ],
  ];

  it.each(cases)('refuse %s', (_name, bad, code, detail) => {
    const err = failOnLine2(bad);
    expect(err.code).toBe(code);
    expect(err.line).toBe(2);
    expect(err.message).toBe(`Dataset validation failed: ${detail} on line 2`);
  });

  it('need at least 3 examples', () => {
    const err = validationError(() => validateDataset('dpo', jsonl(einstein, einstein)));
    expect(err.code).toBe('too_few_examples');
    expect(err.message).toBe(
      'Dataset validation failed: the dataset has 2 examples; DPO datasets need at least 3',
    );
  });
});
