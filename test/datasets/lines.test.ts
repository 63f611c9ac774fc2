/** JSONL line scanning and byte decoding. */
import { describe, expect, it } from 'vitest';
import { decodeDatasetBytes, jsonlLines } from '../../src/datasets/index.js';
import { validationError } from './helpers.js';

describe('jsonlLines', () => {
  it('yields non-blank lines with 1-based physical numbers', () => {
    expect([...jsonlLines('a\n\n  \nb\n')]).toEqual([
      { line: 1, text: 'a' },
      { line: 4, text: 'b' },
    ]);
  });

  it('drops a BOM on line 1 and the \\r of CRLF', () => {
    expect([...jsonlLines('\ufeff{"a":1}\r\n{"b":2}\r\n')]).toEqual([
      { line: 1, text: '{"a":1}' },
      { line: 2, text: '{"b":2}' },
    ]);
  });

  it('yields nothing for empty text and keeps a last line without newline', () => {
    expect([...jsonlLines('')]).toEqual([]);
    expect([...jsonlLines('\n\nx')]).toEqual([{ line: 3, text: 'x' }]);
  });
});

describe('decodeDatasetBytes', () => {
  it('decodes UTF-8 and refuses anything else with the line', () => {
    expect(decodeDatasetBytes(new TextEncoder().encode('é\n'))).toBe('é\n');
    const err = validationError(() => decodeDatasetBytes(new Uint8Array([0x61, 0x0a, 0xc3, 0x28])));
    expect(err.code).toBe('invalid_encoding');
    expect(err.line).toBe(2);
  });
});
