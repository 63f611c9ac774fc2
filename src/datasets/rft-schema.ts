/**
 * One RFT example: a prompt (`messages`, optional `tools`) the policy answers, an optional
 * `ground_truth` (any JSON) for the evaluator, an optional root `weight` (weighted training:
 * the example's loss multiplier, all-or-none across the file like SFT), and any other fields,
 * passed through to the evaluator untouched (`id`, labels, metadata...).
 *
 * The prompt must not end with an assistant message: the model writes the next assistant
 * turn. Some datasets carry a reference answer as a trailing assistant message;
 * `trailingAssistant: 'drop'` strips it from the prompt and hands it to the evaluator as
 * `reference_message` instead of refusing the line (default 'error').
 */

import type { MessageInput, ToolSpecInput } from '../tokenizers/index.js';
import { RowIssue } from './errors.js';
import {
  checkExampleWeight,
  checkMessages,
  checkTools,
  type MessageRules,
} from './message-schema.js';

export interface RftRules extends MessageRules {
  /** What to do with a prompt ending in an assistant message. Default 'error'. */
  trailingAssistant?: 'error' | 'drop';
}

export interface RftRow {
  rowIndex: number;
  line: number;
  /** The row's `id` when it has a string or number one, else `row-<rowIndex>`. */
  rowId: string;
  messages: MessageInput[];
  tools: ToolSpecInput[] | undefined;
  /** `ground_truth` as given (any JSON), undefined when absent. */
  groundTruth: unknown;
  weight: number | undefined;
  /** Every other field of the row (plus `reference_message` when one was dropped). */
  extra: Record<string, unknown>;
}

const OWN_FIELDS = new Set(['messages', 'tools', 'ground_truth', 'weight']);

function rowIdOf(rec: Record<string, unknown>, rowIndex: number): string {
  const id = rec.id;
  return typeof id === 'string' || typeof id === 'number' ? String(id) : `row-${rowIndex}`;
}

/** The prompt must exist and must not end with an assistant message. */
function checkPromptEnd(messages: readonly MessageInput[]): void {
  const end = messages.at(-1);
  if (end === undefined) {
    throw new RowIssue(
      'invalid_prompt',
      'messages holds only an assistant message; an RFT prompt needs the turn the model answers',
    );
  }
  if (end.role === 'assistant') {
    throw new RowIssue(
      'invalid_prompt',
      `messages[${messages.length - 1}] is an assistant message; an RFT prompt must end with the turn the model answers (a user, system or tool message)`,
    );
  }
}

/** Checks one parsed line of an RFT dataset. */
export function checkRftRow(
  rec: Record<string, unknown>,
  at: { rowIndex: number; line: number },
  rules: RftRules,
): RftRow {
  let { messages } = checkMessages(rec.messages, 'messages', rules);
  const tools = checkTools(rec.tools, 'tools');
  const weight = checkExampleWeight(rec.weight);
  const extra: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(rec)) if (!OWN_FIELDS.has(key)) extra[key] = value;
  const last = messages.at(-1)!;
  if (last.role === 'assistant' && rules.trailingAssistant === 'drop') {
    messages = messages.slice(0, -1);
    extra.reference_message = last;
  }
  checkPromptEnd(messages);
  return {
    ...at,
    rowId: rowIdOf(rec, at.rowIndex),
    messages,
    tools,
    groundTruth: rec.ground_truth,
    weight,
    extra,
  };
}
