/**
 * One DPO example, in either of the two documented shapes:
 *
 *   {"input": {"messages": [...], "tools": [...]},
 *    "preferred_output": [{"role": "assistant", ...}],
 *    "non_preferred_output": [{"role": "assistant", ...}]}
 *
 *   {"chosen": {"messages": [..., {"role": "assistant", ...}]},
 *    "rejected": {"messages": [..., {"role": "assistant", ...}]}}
 *
 * Both become a prompt plus one preferred and one non-preferred assistant message: DPO
 * compares one turn per example, so each output is exactly one assistant message, the prompt
 * does not end with an assistant message, and chosen/rejected share every message but the
 * last. Earlier assistant turns inside the prompt are context.
 */

import { isDeepStrictEqual } from 'node:util';
import type { MessageInput, ToolSpecInput } from '../tokenizers/index.js';
import { describeValue, RowIssue } from './errors.js';
import { checkMessages, checkTools, type MessageRules } from './message-schema.js';

export interface DpoRow {
  rowIndex: number;
  line: number;
  prompt: MessageInput[];
  tools: ToolSpecInput[] | undefined;
  chosen: MessageInput;
  rejected: MessageInput;
}

const SHAPES =
  '(a DPO example is {input, preferred_output, non_preferred_output} or {chosen, rejected})';

function requireField(rec: Record<string, unknown>, key: string, where: string): unknown {
  const value = rec[key];
  if (value === undefined) {
    throw new RowIssue('missing_field', `Missing required field '${where}' ${SHAPES}`);
  }
  return value;
}

function requireRecord(value: unknown, where: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new RowIssue('invalid_field', `${where} must be an object (got ${describeValue(value)})`);
  }
  return value as Record<string, unknown>;
}

function checkPrompt(messages: readonly MessageInput[], where: string): void {
  if (messages.at(-1)?.role === 'assistant') {
    throw new RowIssue(
      'invalid_prompt',
      `${where} ends with an assistant message; the prompt must end with the turn the preferred and non-preferred outputs answer`,
    );
  }
}

/** `preferred_output`: a list holding exactly one assistant message. */
function checkOutput(value: unknown, where: string, rules: MessageRules): MessageInput {
  if (!Array.isArray(value) || value.length !== 1) {
    throw new RowIssue(
      'invalid_preference_pair',
      `${where} must be a list with exactly one assistant message (DPO examples have one turn; got ${
        Array.isArray(value) ? `${value.length} messages` : describeValue(value)
      })`,
    );
  }
  const [message] = checkMessages(value, where, rules).messages;
  if (message!.role !== 'assistant') {
    throw new RowIssue(
      'invalid_preference_pair',
      `${where}[0] must be an assistant message (got role ${describeValue(message!.role)})`,
    );
  }
  return message!;
}

function checkInputShape(rec: Record<string, unknown>, at: RowAt, rules: MessageRules): DpoRow {
  const input = requireRecord(requireField(rec, 'input', 'input'), 'input');
  const prompt = checkMessages(input.messages, 'input.messages', rules).messages;
  checkPrompt(prompt, 'input.messages');
  const tools = checkTools(input.tools, 'input.tools');
  const chosen = checkOutput(
    requireField(rec, 'preferred_output', 'preferred_output'),
    'preferred_output',
    rules,
  );
  const rejected = checkOutput(
    requireField(rec, 'non_preferred_output', 'non_preferred_output'),
    'non_preferred_output',
    rules,
  );
  return { ...at, prompt, tools, chosen, rejected };
}

/** One side of the chosen/rejected shape: its prompt (all but the last message) and answer. */
function checkSide(rec: Record<string, unknown>, key: 'chosen' | 'rejected', rules: MessageRules) {
  const side = requireRecord(requireField(rec, key, key), key);
  const messages = checkMessages(side.messages, `${key}.messages`, rules).messages;
  const last = messages.at(-1)!;
  if (last.role !== 'assistant' || messages.length < 2) {
    throw new RowIssue(
      'invalid_preference_pair',
      `${key}.messages must be a prompt followed by one final assistant message`,
    );
  }
  const prompt = messages.slice(0, -1);
  checkPrompt(prompt, `${key}.messages`);
  return { prompt, answer: last, tools: checkTools(side.tools, `${key}.tools`) };
}

function checkChosenShape(rec: Record<string, unknown>, at: RowAt, rules: MessageRules): DpoRow {
  const chosen = checkSide(rec, 'chosen', rules);
  const rejected = checkSide(rec, 'rejected', rules);
  const differ = firstDifference(chosen.prompt, rejected.prompt);
  if (differ !== undefined) {
    throw new RowIssue(
      'invalid_preference_pair',
      `chosen and rejected must share every message but the last; they differ at messages[${differ}]`,
    );
  }
  if (!isDeepStrictEqual(chosen.tools ?? [], rejected.tools ?? [])) {
    throw new RowIssue(
      'invalid_preference_pair',
      'chosen.tools and rejected.tools must be the same',
    );
  }
  return {
    ...at,
    prompt: chosen.prompt,
    tools: chosen.tools,
    chosen: chosen.answer,
    rejected: rejected.answer,
  };
}

function firstDifference(
  a: readonly MessageInput[],
  b: readonly MessageInput[],
): number | undefined {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) if (!isDeepStrictEqual(a[i], b[i])) return i;
  return undefined;
}

type RowAt = { rowIndex: number; line: number };

/** Checks one parsed line of a DPO dataset. */
export function checkDpoRow(rec: Record<string, unknown>, at: RowAt, rules: MessageRules): DpoRow {
  if (rec.input === undefined && (rec.chosen !== undefined || rec.rejected !== undefined)) {
    return checkChosenShape(rec, at, rules);
  }
  return checkInputShape(rec, at, rules);
}
