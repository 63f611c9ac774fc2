// Training examples as the engine and the Training API see them: model inputs, the target
// token at each position, and a loss weight per target.
import type { MessageInput, Renderer } from '../tokenizers/index.js';

export interface Datum {
  tokens: number[];
  targets: number[];
  weights: number[];
}

/**
 * Next-token datum from a token sequence with per-token weights: position i predicts
 * sequence[i + 1] with weight weights[i + 1] (the weight belongs to the predicted token).
 */
export function nextTokenDatum(sequence: readonly number[], weights: readonly number[]): Datum {
  if (sequence.length !== weights.length)
    throw new Error(`datum: ${sequence.length} tokens but ${weights.length} weights`);
  if (sequence.length < 2) throw new Error('datum: a sequence needs at least two tokens');
  return { tokens: sequence.slice(0, -1), targets: sequence.slice(1), weights: weights.slice(1) };
}

/** SFT datum from a conversation: assistant tokens weighted 1, the rest 0 (per the renderer). */
export function conversationDatum(renderer: Renderer, messages: readonly MessageInput[]): Datum {
  const { tokens, weights } = renderer.render(messages);
  return nextTokenDatum(tokens, weights);
}
