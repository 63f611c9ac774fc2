/**
 * One SFT example: `{messages, tools?, weight?}` in the OpenAI fine-tuning format.
 * Per-message `weight` 0|1 picks the turns to train on; the root `weight` (any finite number)
 * multiplies the loss of the whole example. Every example needs at least one assistant
 * message that is trained (no `weight: 0`), otherwise it would teach nothing.
 */

import type { MessageInput, ToolSpecInput } from '../tokenizers/index.js';
import { RowIssue } from './errors.js';
import {
  checkExampleWeight,
  checkMessages,
  checkTools,
  hasReasoning,
  type MessageRules,
} from './message-schema.js';

export interface SftRow {
  /** 0-based index among the dataset's examples (blank lines are not examples). */
  rowIndex: number;
  /** 1-based line of the JSONL file. */
  line: number;
  messages: MessageInput[];
  tools: ToolSpecInput[] | undefined;
  /** Root loss multiplier, when the dataset uses example weights. */
  weight: number | undefined;
  /** Image parts in the example (0 for text-only data). */
  imageParts: number;
}

export function isTrainedAssistant(m: MessageInput): boolean {
  return m.role === 'assistant' && m.weight !== 0;
}

/** Checks one parsed line of an SFT dataset. */
export function checkSftRow(
  rec: Record<string, unknown>,
  at: { rowIndex: number; line: number },
  rules: MessageRules,
): SftRow {
  const { messages, imageParts } = checkMessages(rec.messages, 'messages', rules);
  const tools = checkTools(rec.tools, 'tools');
  const weight = checkExampleWeight(rec.weight);
  if (!messages.some(isTrainedAssistant)) {
    throw new RowIssue(
      'no_trainable_assistant',
      'the example has no assistant message to train on (it needs at least one assistant message without weight 0)',
    );
  }
  return { ...at, messages, tools, weight, imageParts };
}

/**
 * Whether a conversation is unrolled into one example per trained assistant turn: when an
 * assistant turn other than the last carries reasoning_content. At inference a model never sees
 * earlier turns' reasoning, so training on the whole conversation at once would show it
 * context it will never have (the seed's "multi-turn thinking conversations").
 */
export function needsThinkingUnroll(messages: readonly MessageInput[]): boolean {
  let lastAssistant = -1;
  messages.forEach((m, i) => {
    if (m.role === 'assistant') lastAssistant = i;
  });
  return messages.some((m, i) => i !== lastAssistant && hasReasoning(m));
}

/** Number of training examples a row yields (unrolled thinking conversations yield several). */
export function sftExampleCount(messages: readonly MessageInput[]): number {
  return needsThinkingUnroll(messages) ? messages.filter(isTrainedAssistant).length : 1;
}
