// `temper model score`: per-target-token log-probabilities of a text or token list under an
// HF-layout model directory, or a base directory with a PEFT LoRA adapter applied (what a
// model id fetched by model-fetch.ts gives).
import { openAdapterModel } from '../checkpoints/exports/index.js';
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

export interface ScoreSource {
  /** What the result names (the model id, or the directory). */
  name: string;
  /** The full model's directory (with the tokenizer). */
  dir: string;
  /** A LoRA adapter applied on `dir`. */
  adapterDir?: string;
}

export async function scoreModel(
  source: string | ScoreSource,
  input: { text?: string; tokens?: number[] },
  threads?: number,
): Promise<ScoreResult> {
  const { name, dir, adapterDir } =
    typeof source === 'string' ? { name: source, dir: source, adapterDir: undefined } : source;
  const model = adapterDir
    ? await openAdapterModel(dir, adapterDir, { threads })
    : await TransformerModel.fromDirectory(dir, { threads });
  const tokens =
    input.tokens ??
    (await loadModelTokenizer(dir)).encode(input.text ?? '', { allowSpecial: true });
  if (tokens.length < 2)
    throw new Error('need at least two tokens to score (the first token has no prediction)');
  const lp = Array.from(model.forward([{ tokens: tokens.slice(0, -1), targets: tokens.slice(1) }]));
  return { model: name, tokens, logprobs: lp, sum: lp.reduce((a, b) => a + b, 0) };
}
