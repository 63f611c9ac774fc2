/** Shared by the dataset tests: tiny JSONL builders and error capture. */
import { expect } from 'vitest';
import { DatasetValidationError } from '../../src/datasets/index.js';

/** One JSON line per row; strings are taken as raw line text (for malformed lines). */
export function jsonl(...rows: unknown[]): string {
  return rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n');
}

/** The DatasetValidationError `fn` throws (fails the test if it throws nothing else). */
export function validationError(fn: () => unknown): DatasetValidationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DatasetValidationError);
    return err as DatasetValidationError;
  }
  throw new Error('expected a DatasetValidationError, but nothing was thrown');
}

export const user = (content: unknown, extra: object = {}) => ({ role: 'user', content, ...extra });
export const assistant = (content: unknown, extra: object = {}) => ({
  role: 'assistant',
  content,
  ...extra,
});
export const system = (content: unknown) => ({ role: 'system', content });

/** A valid SFT example. */
export const chat = (q = 'What is 2+2?', a = '4', extra: object = {}) => ({
  messages: [user(q), assistant(a)],
  ...extra,
});
