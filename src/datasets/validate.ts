/**
 * Dataset validation before a managed job starts: every line parsed and checked against its
 * kind's schema (sft-schema, dpo-schema, rft-schema), the root-weight rule (on every example
 * or on none), then the example-count limits. Nothing is returned on failure: the job must not
 * be created from a dataset that did not pass.
 *
 * Errors: DatasetValidationError with the first problem's code, line and message; scanning
 * goes on until `maxErrors` problems (default 10) are gathered in `issues`, so a user can fix
 * several lines per round trip. Count limits are checked only on an otherwise valid file.
 */

import { readFile } from 'node:fs/promises';
import { checkDpoRow, type DpoRow } from './dpo-schema.js';
import {
  type DatasetIssue,
  type DatasetValidationCode,
  DatasetValidationError,
  RowIssue,
} from './errors.js';
import { decodeDatasetBytes, jsonlLines, parseJsonLine, requireObject } from './lines.js';
import { hasReasoning, type MessageRules } from './message-schema.js';
import { checkRftRow, type RftRow, type RftRules } from './rft-schema.js';
import { checkSftRow, type SftRow, sftExampleCount } from './sft-schema.js';

export type DatasetKind = 'sft' | 'dpo' | 'rft';

export interface RowsByKind {
  sft: SftRow;
  dpo: DpoRow;
  rft: RftRow;
}

/** Documented limits: 3 to 3,000,000 examples (SFT, DPO); examples × epochs ≤ 3,000,000. */
export const DATASET_LIMITS = {
  sft: { minExamples: 3, maxExamples: 3_000_000 },
  dpo: { minExamples: 3, maxExamples: 3_000_000 },
  // The source gives no minimum for RFT prompts (chosen: 1).
  rft: { minExamples: 1, maxExamples: 3_000_000 },
  maxExampleEpochs: 3_000_000,
} as const;

export interface ValidateOptions extends MessageRules, RftRules {
  /** Planned epochs (fractional allowed): examples × epochs must stay ≤ maxExampleEpochs. */
  epochs?: number;
  minExamples?: number;
  maxExamples?: number;
  maxExampleEpochs?: number;
  /** Problems gathered before giving up (default 10; the first one is the error's message). */
  maxErrors?: number;
}

export interface DatasetSummary {
  kind: DatasetKind;
  /** Examples (non-blank lines). */
  exampleCount: number;
  /** Physical lines, blank ones included. */
  lineCount: number;
  /** Whether the examples carry a root `weight` (then all of them do). */
  exampleWeights: boolean;
  /** Examples a trainer will see: SFT counts unrolled thinking conversations as several. */
  trainingExamples: number;
  messageCount: number;
  examplesWithTools: number;
  examplesWithReasoning: number;
  imageParts: number;
}

export interface ParsedDataset<K extends DatasetKind> {
  kind: K;
  rows: RowsByKind[K][];
  summary: DatasetSummary;
}

type RowAt = { rowIndex: number; line: number };
type Checker<K extends DatasetKind> = (
  rec: Record<string, unknown>,
  at: RowAt,
  opts: ValidateOptions,
) => RowsByKind[K];

const CHECKERS: { [K in DatasetKind]: Checker<K> } = {
  sft: checkSftRow,
  dpo: checkDpoRow,
  rft: checkRftRow,
};

/** The root-weight rule: the first example decides whether every example has a `weight`. */
class WeightPresence {
  private first: { line: number; weighted: boolean } | undefined;

  check(rec: Record<string, unknown>, line: number): void {
    const weighted = rec.weight !== undefined;
    if (!this.first) {
      this.first = { line, weighted };
      return;
    }
    if (weighted === this.first.weighted) return;
    const rule = "if one example has a root 'weight', every example must";
    throw new RowIssue(
      'mixed_example_weights',
      weighted
        ? `root 'weight' is set but line ${this.first.line} has none (${rule})`
        : `root 'weight' is missing but line ${this.first.line} has one (${rule})`,
    );
  }

  get weighted(): boolean {
    return this.first?.weighted ?? false;
  }
}

function summarize<K extends DatasetKind>(
  kind: K,
  rows: readonly RowsByKind[K][],
  lineCount: number,
  weighted: boolean,
): DatasetSummary {
  const summary: DatasetSummary = {
    kind,
    exampleCount: rows.length,
    lineCount,
    exampleWeights: weighted,
    trainingExamples: 0,
    messageCount: 0,
    examplesWithTools: 0,
    examplesWithReasoning: 0,
    imageParts: 0,
  };
  for (const row of rows as readonly (SftRow | DpoRow | RftRow)[]) {
    const messages = 'prompt' in row ? [...row.prompt, row.chosen] : row.messages;
    summary.messageCount += messages.length;
    summary.trainingExamples += kind === 'sft' ? sftExampleCount(messages) : 1;
    if (row.tools && row.tools.length > 0) summary.examplesWithTools++;
    if (messages.some(hasReasoning)) summary.examplesWithReasoning++;
    if ('imageParts' in row) summary.imageParts += row.imageParts;
  }
  return summary;
}

function countIssues(
  kind: DatasetKind,
  rows: readonly { line: number }[],
  opts: ValidateOptions,
): DatasetIssue[] {
  const count = rows.length;
  const min = opts.minExamples ?? DATASET_LIMITS[kind].minExamples;
  const max = opts.maxExamples ?? DATASET_LIMITS[kind].maxExamples;
  const maxProduct = opts.maxExampleEpochs ?? DATASET_LIMITS.maxExampleEpochs;
  const fmt = (n: number) => n.toLocaleString('en-US');
  const issue = (code: DatasetValidationCode, detail: string, line?: number): DatasetIssue[] => [
    { code, line, detail },
  ];
  if (count < min) {
    return issue(
      'too_few_examples',
      `the dataset has ${fmt(count)} example${count === 1 ? '' : 's'}; ${kind.toUpperCase()} datasets need at least ${fmt(min)}`,
    );
  }
  if (count > max) {
    return issue(
      'too_many_examples',
      `example ${fmt(max + 1)} is over the limit of ${fmt(max)} examples per dataset`,
      rows[max]!.line,
    );
  }
  if (opts.epochs !== undefined && count * opts.epochs > maxProduct) {
    return issue(
      'too_many_examples',
      `${fmt(count)} examples × ${opts.epochs} epochs = ${fmt(Math.ceil(count * opts.epochs))} exceeds the limit of ${fmt(maxProduct)} examples × epochs; use fewer epochs or fewer examples`,
    );
  }
  return [];
}

/** Parses and checks a whole dataset; throws DatasetValidationError on any problem. */
export function parseDataset<K extends DatasetKind>(
  kind: K,
  input: string | Uint8Array,
  opts: ValidateOptions = {},
): ParsedDataset<K> {
  const text = typeof input === 'string' ? input : decodeDatasetBytes(input);
  const maxErrors = Math.max(1, opts.maxErrors ?? 10);
  const check = CHECKERS[kind] as Checker<K>;
  const weights = new WeightPresence();
  const rows: RowsByKind[K][] = [];
  const issues: DatasetIssue[] = [];
  let lineCount = 0;
  for (const { line, text: body } of jsonlLines(text)) {
    lineCount = line;
    try {
      const rec = requireObject(parseJsonLine(body));
      const row = check(rec, { rowIndex: rows.length, line }, opts);
      if (kind !== 'dpo') weights.check(rec, line);
      rows.push(row);
    } catch (err) {
      if (!(err instanceof RowIssue)) throw err;
      issues.push({ code: err.code, line, detail: err.message });
      if (issues.length >= maxErrors) break;
    }
  }
  lineCount = Math.max(lineCount, physicalLineCount(text));
  if (issues.length === 0) issues.push(...countIssues(kind, rows, opts));
  if (issues.length > 0) throw new DatasetValidationError(issues);
  return { kind, rows, summary: summarize(kind, rows, lineCount, weights.weighted) };
}

/** Lines an editor shows: a final newline does not start another line. */
function physicalLineCount(text: string): number {
  if (text === '') return 0;
  let n = 1;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return text.endsWith('\n') ? n - 1 : n;
}

/** Checks a dataset and returns its summary (`exampleCount` and statistics). */
export function validateDataset(
  kind: DatasetKind,
  input: string | Uint8Array,
  opts: ValidateOptions = {},
): DatasetSummary {
  return parseDataset(kind, input, opts).summary;
}

/** parseDataset on a file (read as bytes, so invalid UTF-8 is caught with its line). */
export async function readDataset<K extends DatasetKind>(
  kind: K,
  path: string,
  opts: ValidateOptions = {},
): Promise<ParsedDataset<K>> {
  return parseDataset(kind, new Uint8Array(await readFile(path)), opts);
}
