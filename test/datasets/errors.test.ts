/** The typed validation error and its messages. */
import { describe, expect, it } from 'vitest';
import { DatasetValidationError, issueMessage } from '../../src/datasets/index.js';

describe('DatasetValidationError', () => {
  it('takes its code, line and message from the first issue', () => {
    const err = new DatasetValidationError([
      { code: 'missing_field', line: 3, detail: "Missing required field 'messages'" },
      { code: 'invalid_json', line: 9, detail: 'invalid JSON (Unexpected end)' },
    ]);
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('DatasetValidationError');
    expect(err.code).toBe('missing_field');
    expect(err.line).toBe(3);
    expect(err.message).toBe(
      "Dataset validation failed: Missing required field 'messages' on line 3",
    );
    expect(err.issues).toHaveLength(2);
    expect(issueMessage(err.issues[1]!)).toBe(
      'Dataset validation failed: invalid JSON on line 9 (Unexpected end)',
    );
    expect([err.httpStatus, err.grpcStatus]).toEqual([400, 3]);
  });

  it('writes whole-file issues without a line', () => {
    const err = DatasetValidationError.of('too_few_examples', 'the dataset has 0 examples');
    expect(err.line).toBeUndefined();
    expect(err.message).toBe('Dataset validation failed: the dataset has 0 examples');
  });

  it('needs an issue', () => {
    expect(() => new DatasetValidationError([])).toThrow(/at least one issue/);
  });
});
