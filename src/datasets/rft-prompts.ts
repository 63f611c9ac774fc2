/**
 * RFT rows to generation prompts: the tokens a deployment samples from (the conversation plus
 * the assistant header), with what the evaluator needs to score the rollouts: the row id and
 * line, `ground_truth`, the row's other fields, and the example weight.
 */

import type { MessageInput, Renderer, ToolSpecInput } from '../tokenizers/index.js';
import { DatasetValidationError } from './errors.js';
import type { RftRow } from './rft-schema.js';

export interface RftPromptOptions {
  /** qwen3: false renders an empty think block so the model answers directly. Default true. */
  enableThinking?: boolean;
  /**
   * Longest prompt allowed, in tokens. A prompt is never cut (a cut prompt asks a different
   * question); a longer one fails with `prompt_too_long` naming its line.
   */
  maxPromptTokens?: number;
}

export interface RftPrompt {
  rowIndex: number;
  line: number;
  rowId: string;
  promptTokens: number[];
  messages: MessageInput[];
  tools: ToolSpecInput[] | undefined;
  groundTruth: unknown;
  /** Root example weight (1 when the dataset has none). */
  weight: number;
  extra: Record<string, unknown>;
}

export function rftPrompts(
  rows: readonly RftRow[],
  renderer: Renderer,
  opts: RftPromptOptions = {},
): RftPrompt[] {
  return rows.map((row) => {
    const promptOptions =
      opts.enableThinking === undefined
        ? { tools: row.tools }
        : { tools: row.tools, enableThinking: opts.enableThinking };
    const promptTokens = renderer.renderGenerationPrompt(row.messages, promptOptions);
    if (opts.maxPromptTokens !== undefined && promptTokens.length > opts.maxPromptTokens) {
      throw DatasetValidationError.of(
        'prompt_too_long',
        `the prompt renders to ${promptTokens.length} tokens, more than the ${opts.maxPromptTokens} allowed`,
        row.line,
      );
    }
    return {
      rowIndex: row.rowIndex,
      line: row.line,
      rowId: row.rowId,
      promptTokens,
      messages: row.messages,
      tools: row.tools,
      groundTruth: row.groundTruth,
      weight: row.weight ?? 1,
      extra: row.extra,
    };
  });
}
