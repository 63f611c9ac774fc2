/**
 * The typed error of dataset validation. Every error has a stable `code`, the 1-based `line`
 * of the JSONL file it is about (absent only for whole-file problems such as too few
 * examples), the HTTP and gRPC status it maps to, and a message a user can act on:
 *
 *   Dataset validation failed: invalid JSON on line 42 (Unexpected token } ...)
 *   Dataset validation failed: Missing required field 'messages' on line 3
 *
 * Validation keeps scanning after the first problem and gathers up to `maxErrors` issues in
 * `issues`; the error itself (code, line, message) is the first one, so "first error wins"
 * for anything that reads only the message.
 */

export type DatasetValidationCode =
  /** The file is not valid UTF-8. */
  | 'invalid_encoding'
  /** A line is not valid JSON. */
  | 'invalid_json'
  /** A line is valid JSON but not an object. */
  | 'invalid_row'
  /** A required field is absent. */
  | 'missing_field'
  /** A field has the wrong type or shape (tools, tool_calls, messages, ...). */
  | 'invalid_field'
  /** A message role is not system, user, assistant or tool. */
  | 'invalid_role'
  /** A system message somewhere other than first. */
  | 'system_not_first'
  /** Message content is neither a string nor a list of content parts. */
  | 'invalid_content'
  /** A per-message `weight` other than 0 or 1. */
  | 'invalid_message_weight'
  /** A per-example root `weight` that is not a finite number. */
  | 'invalid_example_weight'
  /** Some examples have a root `weight` and others do not. */
  | 'mixed_example_weights'
  /** An SFT example with no assistant message to train on. */
  | 'no_trainable_assistant'
  /** An image part for a text-only base model. */
  | 'image_not_supported'
  /** An image part that a vision model still cannot take (URL not a data URI, wrong role). */
  | 'invalid_image'
  /** A prompt that cannot be completed (RFT/DPO prompt ending with an assistant message). */
  | 'invalid_prompt'
  /** A DPO example whose chosen and rejected sides do not form one-turn pair. */
  | 'invalid_preference_pair'
  /** An RFT prompt longer than the allowed prompt length. */
  | 'prompt_too_long'
  /** Fewer examples than the job kind needs. */
  | 'too_few_examples'
  /** More examples (or examples × epochs) than allowed. */
  | 'too_many_examples';

/** One problem found in a dataset. */
export interface DatasetIssue {
  code: DatasetValidationCode;
  /** 1-based line in the JSONL file; undefined for whole-file problems. */
  line: number | undefined;
  /** What is wrong, without the "Dataset validation failed" prefix or the line. */
  detail: string;
}

export const DATASET_ERROR_PREFIX = 'Dataset validation failed';

/** The user-facing sentence for one issue. */
export function issueMessage(issue: DatasetIssue): string {
  if (issue.line === undefined) return `${DATASET_ERROR_PREFIX}: ${issue.detail}`;
  // "invalid JSON on line 42 (...)": the parser's words go after the line, as the spec writes it.
  if (issue.code === 'invalid_json') {
    const why = issue.detail.replace(/^invalid JSON ?/, '');
    return `${DATASET_ERROR_PREFIX}: invalid JSON on line ${issue.line}${why ? ` ${why}` : ''}`;
  }
  return `${DATASET_ERROR_PREFIX}: ${issue.detail} on line ${issue.line}`;
}

export class DatasetValidationError extends Error {
  readonly code: DatasetValidationCode;
  readonly line: number | undefined;
  readonly detail: string;
  /** Every issue gathered (the first is this error's own), at most the maxErrors asked for. */
  readonly issues: readonly DatasetIssue[];
  /** Bad input: 400 / INVALID_ARGUMENT, whatever the code. */
  readonly httpStatus = 400;
  readonly grpcStatus = 3;

  constructor(issues: readonly DatasetIssue[]) {
    const first = issues[0];
    if (!first) throw new Error('DatasetValidationError needs at least one issue');
    super(issueMessage(first));
    this.name = 'DatasetValidationError';
    this.code = first.code;
    this.line = first.line;
    this.detail = first.detail;
    this.issues = issues;
  }

  static of(code: DatasetValidationCode, detail: string, line?: number): DatasetValidationError {
    return new DatasetValidationError([{ code, line, detail }]);
  }
}

/**
 * A problem with one row, thrown by the row checkers and turned into a DatasetIssue (with the
 * line) by the file scanner. Internal: callers only ever see DatasetValidationError.
 */
export class RowIssue extends Error {
  readonly code: DatasetValidationCode;
  constructor(code: DatasetValidationCode, detail: string) {
    super(detail);
    this.code = code;
  }
}

/** Short description of a JSON value for messages: `a string`, `null`, `an array`, `5`. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return value.length <= 40 ? JSON.stringify(value) : 'a string';
    case 'number':
    case 'boolean':
      return String(value);
    case 'object':
      return 'an object';
    default:
      return typeof value;
  }
}
