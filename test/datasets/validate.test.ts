/** Whole-file validation: JSON errors, line numbering, limits, error collection, summary. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DatasetValidationError,
  parseDataset,
  readDataset,
  validateDataset,
} from '../../src/datasets/index.js';
import { chat, jsonl, validationError } from './helpers.js';

const valid = (n: number) => jsonl(...Array.from({ length: n }, (_, i) => chat(`q${i}`, `a${i}`)));

function jsonError(text: string): string {
  try {
    JSON.parse(text);
  } catch (err) {
    return (err as Error).message;
  }
  return '';
}

describe('validateDataset', () => {
  it('names the line of invalid JSON as the spec writes it', () => {
    const text = `${valid(41)}\n{"messages": [}\n${valid(2)}`;
    const err = validationError(() => validateDataset('sft', text));
    expect(err.code).toBe('invalid_json');
    expect(err.line).toBe(42);
    expect(err.message).toBe(
      `Dataset validation failed: invalid JSON on line 42 (${jsonError('{"messages": [}')})`,
    );
    expect(err.message.startsWith('Dataset validation failed: invalid JSON on line 42')).toBe(true);
    expect(err.httpStatus).toBe(400);
    expect(err.grpcStatus).toBe(3);
  });

  it('wants one JSON object per line', () => {
    const err = validationError(() => validateDataset('sft', jsonl(chat(), '"just text"', chat())));
    expect(err.code).toBe('invalid_row');
    expect(err.message).toBe(
      'Dataset validation failed: each line must be one JSON object such as {"messages": [...]} (got "just text") on line 2',
    );
  });

  it('counts lines as an editor does: blank lines skipped but numbered, CRLF and a BOM tolerated', () => {
    const text = `\ufeff${JSON.stringify(chat())}\r\n\r\n   \n${JSON.stringify(chat())}\r\n{bad}\r\n`;
    const err = validationError(() => validateDataset('sft', text));
    expect(err.line).toBe(5);
    const ok = parseDataset('sft', `\ufeff${valid(1)}\r\n\r\n${valid(2)}\r\n`);
    expect(ok.rows.map((r) => [r.rowIndex, r.line])).toEqual([
      [0, 1],
      [1, 3],
      [2, 4],
    ]);
    expect(ok.summary.lineCount).toBe(4);
  });

  it('refuses invalid UTF-8 bytes, naming the line', () => {
    const bytes = Buffer.concat([
      Buffer.from(`${valid(2)}\n{"messages": "`),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('"}\n'),
    ]);
    const err = validationError(() => validateDataset('sft', new Uint8Array(bytes)));
    expect(err.code).toBe('invalid_encoding');
    expect(err.message).toBe(
      'Dataset validation failed: the file is not valid UTF-8 text; save it as UTF-8 on line 3',
    );
    expect(validateDataset('sft', new Uint8Array(Buffer.from(valid(3)))).exampleCount).toBe(3);
  });

  it('gathers up to maxErrors problems; the first is the message', () => {
    const text = jsonl('{x', chat(), { messages: [] }, '[]', chat(), '{y');
    const err = validationError(() => validateDataset('sft', text, { maxErrors: 3 }));
    expect(err.line).toBe(1);
    expect(err.issues.map((i) => [i.code, i.line])).toEqual([
      ['invalid_json', 1],
      ['invalid_field', 3],
      ['invalid_row', 4],
    ]);
    const all = validationError(() => validateDataset('sft', text));
    expect(all.issues).toHaveLength(4);
    const first = validationError(() => validateDataset('sft', text, { maxErrors: 1 }));
    expect(first.issues).toHaveLength(1);
  });

  it('needs 3 examples for SFT', () => {
    const err = validationError(() => validateDataset('sft', valid(2)));
    expect(err.code).toBe('too_few_examples');
    expect(err.line).toBeUndefined();
    expect(err.message).toBe(
      'Dataset validation failed: the dataset has 2 examples; SFT datasets need at least 3',
    );
    expect(validationError(() => validateDataset('sft', '\n\n')).detail).toBe(
      'the dataset has 0 examples; SFT datasets need at least 3',
    );
  });

  it('refuses more examples than allowed, naming the first line over the limit', () => {
    const err = validationError(() => validateDataset('sft', `\n${valid(5)}`, { maxExamples: 3 }));
    expect(err.code).toBe('too_many_examples');
    expect(err.message).toBe(
      'Dataset validation failed: example 4 is over the limit of 3 examples per dataset on line 5',
    );
  });

  it('limits examples × epochs to 3,000,000', () => {
    expect(validateDataset('sft', valid(3), { epochs: 1_000_000 }).exampleCount).toBe(3);
    const err = validationError(() => validateDataset('sft', valid(3), { epochs: 1_000_000.5 }));
    expect(err.code).toBe('too_many_examples');
    expect(err.message).toBe(
      'Dataset validation failed: 3 examples × 1000000.5 epochs = 3,000,002 exceeds the limit of 3,000,000 examples × epochs; use fewer epochs or fewer examples',
    );
  });

  it('checks counts only on an otherwise valid file', () => {
    const err = validationError(() => validateDataset('sft', jsonl(chat(), '{x')));
    expect(err.issues.map((i) => i.code)).toEqual(['invalid_json']);
  });

  it('summarizes a valid dataset', () => {
    const text = jsonl(
      chat('a', 'b'),
      { ...chat('c', 'd'), tools: [{ type: 'function', function: { name: 'f' } }] },
      {
        messages: [
          { role: 'user', content: 'e' },
          { role: 'assistant', content: 'f', reasoning_content: 'r' },
        ],
      },
    );
    expect(validateDataset('sft', text)).toEqual({
      kind: 'sft',
      exampleCount: 3,
      lineCount: 3,
      exampleWeights: false,
      trainingExamples: 3,
      messageCount: 6,
      examplesWithTools: 1,
      examplesWithReasoning: 1,
      imageParts: 0,
    });
  });
});

describe('readDataset', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'temper-datasets-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads and checks a file', async () => {
    const path = join(dir, 'train.jsonl');
    await writeFile(path, `${valid(3)}\n`);
    const parsed = await readDataset('sft', path);
    expect(parsed.rows).toHaveLength(3);
    await writeFile(path, `${valid(3)}\n{"oops"\n`);
    await expect(readDataset('sft', path)).rejects.toThrow(DatasetValidationError);
    await expect(readDataset('sft', path)).rejects.toThrow(/invalid JSON on line 4/);
  });

  it('validates the bundled demo dataset', async () => {
    const path = new URL(
      '../../catalog/accounts/temper/datasets/sure-answers-sft.jsonl',
      import.meta.url,
    ).pathname;
    const parsed = await readDataset('sft', path);
    expect(parsed.summary.exampleCount).toBe(128);
  });
});
