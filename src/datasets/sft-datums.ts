/**
 * SFT examples to training datums through a chat renderer (src/tokenizers):
 *
 * - per-message `weight` 0|1 is honoured by the renderer (assistant turns train by default);
 * - the root `weight` multiplies every token weight of the example (0 silences it, a negative
 *   weight reverses its gradient; the engine's fused cross-entropy takes any real weight);
 * - a multi-turn thinking conversation (reasoning_content on an assistant turn before the
 *   last) is unrolled into one example per trained assistant turn: example k holds the
 *   conversation up to turn k, earlier assistant turns as context only (weight 0, reasoning
 *   removed, as a model sees its history at inference), and trains turn k alone;
 * - examples longer than maxContextLength keep their first maxContextLength tokens (the SDK's
 *   one truncation rule).
 *
 * `renderSamples` keeps the first records in the "render samples" layout a job stores for
 * users to debug tokenization.
 */

import { type Datum, nextTokenDatum, truncateSequence } from '../sdk/datums.js';
import type { MessageInput, Renderer } from '../tokenizers/index.js';
import { DatasetValidationError } from './errors.js';
import { isTrainedAssistant, needsThinkingUnroll, type SftRow } from './sft-schema.js';

export type TrainOnWhat = 'all_assistant_messages' | 'last_assistant_message';

export interface SftRenderOptions {
  /** Longest sequence kept, in tokens; longer examples lose their end. */
  maxContextLength?: number;
}

/** One rendered training record (a row yields several when unrolled). */
export interface SftRecord {
  rowIndex: number;
  line: number;
  /** Which record of its row (0 unless the row was unrolled). */
  splitIndex: number;
  trainOnWhat: TrainOnWhat;
  /** Full token sequence (before the next-token shift), truncated. */
  tokens: number[];
  /** One weight per token: the renderer's 0/1 times the example's root weight. */
  weights: number[];
  /** Tokens lost to maxContextLength. */
  truncatedTokens: number;
}

export interface SftExample {
  rowIndex: number;
  line: number;
  splitIndex: number;
  datum: Datum;
  truncatedTokens: number;
}

/** The conversations a row trains on, each with what it trains. */
export function unrollSftMessages(
  messages: readonly MessageInput[],
): { messages: MessageInput[]; trainOnWhat: TrainOnWhat }[] {
  if (!needsThinkingUnroll(messages)) {
    return [{ messages: [...messages], trainOnWhat: 'all_assistant_messages' }];
  }
  const out: { messages: MessageInput[]; trainOnWhat: TrainOnWhat }[] = [];
  messages.forEach((m, k) => {
    if (!isTrainedAssistant(m)) return;
    const history = messages.slice(0, k).map(asContext);
    out.push({ messages: [...history, m], trainOnWhat: 'last_assistant_message' });
  });
  return out;
}

/** An earlier assistant turn as the model sees it later: no reasoning, not trained. */
function asContext(m: MessageInput): MessageInput {
  if (m.role !== 'assistant') return m;
  const { reasoning_content: _dropped, ...rest } = m;
  return { ...rest, weight: 0 };
}

function refuseImages(row: SftRow, renderer: Renderer): void {
  if (row.imageParts > 0) {
    throw DatasetValidationError.of(
      'image_not_supported',
      `the example has image parts, which the ${renderer.name} renderer cannot render`,
      row.line,
    );
  }
}

/** The records of one row. */
export function renderSftRow(
  row: SftRow,
  renderer: Renderer,
  opts: SftRenderOptions = {},
): SftRecord[] {
  refuseImages(row, renderer);
  const scale = row.weight ?? 1;
  return unrollSftMessages(row.messages).map(({ messages, trainOnWhat }, splitIndex) => {
    const rendered = renderer.render(messages, { tools: row.tools });
    const cut = truncateSequence(rendered.tokens, rendered.weights, opts.maxContextLength);
    return {
      rowIndex: row.rowIndex,
      line: row.line,
      splitIndex,
      trainOnWhat,
      tokens: cut.tokens,
      // `w === 0` keeps untrained tokens at +0 under a negative scale.
      weights: cut.weights.map((w) => (w === 0 ? 0 : w * scale)),
      truncatedTokens: rendered.tokens.length - cut.tokens.length,
    };
  });
}

/** Training datums for SFT rows, in row order (unrolled records of a row stay together). */
export function sftDatums(
  rows: readonly SftRow[],
  renderer: Renderer,
  opts: SftRenderOptions = {},
): SftExample[] {
  return rows.flatMap((row) =>
    renderSftRow(row, renderer, opts).map((r) => ({
      rowIndex: r.rowIndex,
      line: r.line,
      splitIndex: r.splitIndex,
      datum: nextTokenDatum(r.tokens, r.weights),
      truncatedTokens: r.truncatedTokens,
    })),
  );
}

/** A rendered record as a job's render samples file stores it (one JSONL line each). */
export interface RenderSample {
  source_jsonl_row_index: number;
  source_jsonl_line_number: number;
  split_index: number;
  renderer: string;
  train_on_what: TrainOnWhat;
  token_ids: number[];
  decoded_tokens: string[];
  token_weights: number[];
  training_target_token_ids: number[];
  training_loss_weights: number[];
}

export const RENDER_SAMPLE_LIMIT = 20;

/** The first `limit` (default 20) rendered records of the dataset, in order. */
export function renderSamples(
  rows: readonly SftRow[],
  renderer: Renderer,
  opts: SftRenderOptions & { limit?: number } = {},
): RenderSample[] {
  const limit = opts.limit ?? RENDER_SAMPLE_LIMIT;
  const samples: RenderSample[] = [];
  for (const row of rows) {
    for (const r of renderSftRow(row, renderer, opts)) {
      if (samples.length >= limit) return samples;
      samples.push(toSample(r, renderer));
    }
  }
  return samples;
}

function toSample(r: SftRecord, renderer: Renderer): RenderSample {
  const datum = nextTokenDatum(r.tokens, r.weights);
  return {
    source_jsonl_row_index: r.rowIndex,
    source_jsonl_line_number: r.line,
    split_index: r.splitIndex,
    renderer: renderer.name,
    train_on_what: r.trainOnWhat,
    token_ids: r.tokens,
    decoded_tokens: r.tokens.map((t) => renderer.tokenizer.decode([t])),
    token_weights: r.weights,
    training_target_token_ids: datum.targets,
    training_loss_weights: datum.weights,
  };
}
