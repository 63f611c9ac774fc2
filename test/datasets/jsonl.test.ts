import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseJsonl } from '../../src/datasets/jsonl.js';
import { nextTokenDatum } from '../../src/sdk/datums.js';

describe('JSONL datasets', () => {
  const schema = z.object({
    messages: z.array(z.object({ role: z.string(), content: z.string() })),
  });
  it('parses rows and skips blank lines', () => {
    const rows = parseJsonl(
      '{"messages":[]}\n\n{"messages":[{"role":"user","content":"hi"}]}\n',
      schema,
      'd.jsonl',
    );
    expect(rows).toHaveLength(2);
  });
  it('names the file and line of invalid JSON and schema errors', () => {
    expect(() => parseJsonl('{"messages":[]}\n{oops}\n', schema, 'd.jsonl')).toThrow(
      /^d.jsonl:2: invalid JSON/,
    );
    expect(() =>
      parseJsonl('{"messages":[]}\n\n{"messages":[{"role":1}]}', schema, 'd.jsonl'),
    ).toThrow(/^d.jsonl:3: messages.0.role: /);
    expect(() => parseJsonl('\n\n', schema, 'd.jsonl')).toThrow(/d.jsonl: no examples/);
  });
});

describe('datums', () => {
  it('shift tokens into inputs and targets; a weight belongs to the predicted token', () => {
    expect(nextTokenDatum([10, 11, 12, 13], [0, 0, 1, 1])).toEqual({
      tokens: [10, 11, 12],
      targets: [11, 12, 13],
      weights: [0, 1, 1],
    });
    expect(() => nextTokenDatum([1], [1])).toThrow(/at least two tokens/);
  });
});
