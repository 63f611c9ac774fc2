/**
 * DPO rows to [chosen, rejected] datum pairs, the layout src/losses/preference.ts takes
 * (data = [c0, r0, c1, r1, ...]). Both sides render the same prompt, so their tokens share a
 * prefix; the loss finds the response start as the longest common token prefix, and
 * `responseStart` here is that same number so callers can pass it as `responseStarts`.
 * Weights: 1 on the response (its content and end-of-turn token), 0 on the prompt, whatever
 * weights the prompt messages carried (DPO scores the response only).
 */

import { commonPrefixLength } from '../losses/preference.js';
import { type Datum, nextTokenDatum, truncateSequence } from '../sdk/datums.js';
import type { MessageInput, Renderer } from '../tokenizers/index.js';
import type { DpoRow } from './dpo-schema.js';

export interface DpoRenderOptions {
  /** Longest sequence kept per side, in tokens; longer ones lose their end. */
  maxContextLength?: number;
}

export interface DpoPair {
  rowIndex: number;
  line: number;
  chosen: Datum;
  rejected: Datum;
  /** Tokens of the rendered prompt (through the assistant header), before truncation. */
  promptTokens: number;
  /** Full-sequence index where chosen and rejected first differ (the loss's `rs`). */
  responseStart: number;
  /** Tokens lost to maxContextLength, summed over both sides. */
  truncatedTokens: number;
}

function side(
  row: DpoRow,
  answer: MessageInput,
  renderer: Renderer,
  maxLength: number | undefined,
): { tokens: number[]; weights: number[]; cut: number } {
  const prompt = row.prompt.map((m): MessageInput => ({ ...m, weight: 0 }));
  const rendered = renderer.render([...prompt, { ...answer, weight: 1 }], { tools: row.tools });
  const t = truncateSequence(rendered.tokens, rendered.weights, maxLength);
  return { ...t, cut: rendered.tokens.length - t.tokens.length };
}

/** One [chosen, rejected] pair per DPO row, in row order. */
export function dpoPairs(
  rows: readonly DpoRow[],
  renderer: Renderer,
  opts: DpoRenderOptions = {},
): DpoPair[] {
  return rows.map((row) => {
    const c = side(row, row.chosen, renderer, opts.maxContextLength);
    const r = side(row, row.rejected, renderer, opts.maxContextLength);
    return {
      rowIndex: row.rowIndex,
      line: row.line,
      chosen: nextTokenDatum(c.tokens, c.weights),
      rejected: nextTokenDatum(r.tokens, r.weights),
      promptTokens: renderer.renderGenerationPrompt(row.prompt, { tools: row.tools }).length,
      responseStart: commonPrefixLength(c.tokens, r.tokens),
      truncatedTokens: c.cut + r.cut,
    };
  });
}

/** The pairs flattened as the DPO loss takes them: [c0, r0, c1, r1, ...]. */
export function flattenPairs(pairs: readonly DpoPair[]): Datum[] {
  return pairs.flatMap((p) => [p.chosen, p.rejected]);
}
