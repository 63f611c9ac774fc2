// `temper model score`: per-target-token log-probabilities of a text or token list under an
// HF-layout model directory.
import { TransformerModel } from '../engine/model.js';
import { loadModelTokenizer } from '../tokenizers/model-files.js';

export interface ScoreResult {
  model: string;
  tokens: number[];
  /** logprobs[i] = log p(tokens[i + 1] | tokens[..i]) */
  logprobs: number[];
  sum: number;
}

export function parseTokenList(s: string): number[] {
  const parts = s.split(',').map((x) => x.trim());
  return parts.map((p, i) => {
    if (!/^\d+$/.test(p))
      throw new Error(`--tokens: item ${i + 1} ('${p}') is not a non-negative integer token id`);
    return Number(p);
  });
}

export async function scoreModel(
  dir: string,
  input: { text?: string; tokens?: number[] },
  threads?: number,
): Promise<ScoreResult> {
  const model = await TransformerModel.fromDirectory(dir, { threads });
  const tokens =
    input.tokens ??
    (await loadModelTokenizer(dir)).encode(input.text ?? '', { allowSpecial: true });
  if (tokens.length < 2)
    throw new Error('need at least two tokens to score (the first token has no prediction)');
  const lp = Array.from(model.forward([{ tokens: tokens.slice(0, -1), targets: tokens.slice(1) }]));
  return { model: dir, tokens, logprobs: lp, sum: lp.reduce((a, b) => a + b, 0) };
}
