/**
 * The lines of a JSONL dataset: numbered as an editor numbers them (1-based, physical lines,
 * so blank lines count), with a UTF-8 byte-order mark on line 1 and a `\r` before each `\n`
 * tolerated. Blank (whitespace-only) lines are skipped: editors and concatenation leave them,
 * and they hold no example. Each other line must be one JSON value.
 */

import { DatasetValidationError, describeValue, RowIssue } from './errors.js';

export interface JsonlLine {
  /** 1-based physical line number. */
  line: number;
  /** The line's text without BOM, `\r` or surrounding whitespace. */
  text: string;
}

/** Non-blank lines, lazily (a 3M-line file is never split into one big array). */
export function* jsonlLines(text: string): Generator<JsonlLine> {
  let start = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const body = text.slice(start, end).trim();
    if (body !== '') yield { line, text: body };
    start = end + 1;
    line++;
  }
}

/** Parses one line; a syntax error becomes an `invalid_json` RowIssue with the parser's words. */
export function parseJsonLine(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new RowIssue('invalid_json', `invalid JSON (${(err as Error).message})`);
  }
}

/** A parsed line must be an object: `{"messages": ...}`, not an array or a string. */
export function requireObject(value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new RowIssue(
      'invalid_row',
      `each line must be one JSON object such as {"messages": [...]} (got ${describeValue(value)})`,
    );
  }
  return value as Record<string, unknown>;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Text of an uploaded file. Invalid UTF-8 is refused (naming the first bad line) rather than
 * turned into U+FFFD, which would silently change the training text.
 */
export function decodeDatasetBytes(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw DatasetValidationError.of(
      'invalid_encoding',
      'the file is not valid UTF-8 text; save it as UTF-8',
      firstBadUtf8Line(bytes),
    );
  }
}

function firstBadUtf8Line(bytes: Uint8Array): number | undefined {
  let start = 0;
  let line = 1;
  while (start <= bytes.length) {
    let end = bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    try {
      strictUtf8.decode(bytes.subarray(start, end));
    } catch {
      return line;
    }
    start = end + 1;
    line++;
  }
  return undefined;
}
