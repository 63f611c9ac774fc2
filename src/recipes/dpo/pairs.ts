/**
 * Preference data for DPO and ORPO: the cookbook's two row formats —
 * `{chosen: {messages}, rejected: {messages}}` and `{input: {messages}, preferred_output: [...],
 * non_preferred_output: [...]}` — rendered to a [chosen, rejected] pair of target-token datums
 * (the losses find where the two responses diverge from the tokens).
 */
import { z } from 'zod';
import { type TrainingDatum, targetTokenDatum } from '../../sdk/index.js';
import { messagesSchema, type Renderer } from '../../tokenizers/index.js';
import { readRows } from '../kit/data.js';

const conversation = z.object({ messages: messagesSchema });
export const preferenceRowSchema = z.union([
  z.object({ chosen: conversation, rejected: conversation }),
  z.object({
    input: conversation,
    preferred_output: messagesSchema,
    non_preferred_output: messagesSchema,
  }),
]);
export type PreferenceRow = z.output<typeof preferenceRowSchema>;

export interface PreferencePair {
  chosen: TrainingDatum;
  rejected: TrainingDatum;
}

function pairMessages(row: PreferenceRow) {
  if ('chosen' in row) return { chosen: row.chosen.messages, rejected: row.rejected.messages };
  return {
    chosen: [...row.input.messages, ...row.preferred_output],
    rejected: [...row.input.messages, ...row.non_preferred_output],
  };
}

export async function readPreferencePairs(
  dataset: string,
  renderer: Renderer,
  maxLength?: number,
): Promise<PreferencePair[]> {
  const rows = await readRows(dataset, preferenceRowSchema);
  return rows.map((row) => {
    const m = pairMessages(row);
    const render = (messages: typeof m.chosen) => {
      const r = renderer.render(messages);
      return targetTokenDatum(r.tokens, {
        weights: r.weights,
        ...(maxLength ? { maxLength } : {}),
      });
    };
    return { chosen: render(m.chosen), rejected: render(m.rejected) };
  });
}
