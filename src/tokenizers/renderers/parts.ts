/**
 * The common back end of renderers: a conversation is laid out as a list of parts (text with a
 * weight, a special token with a weight, or a forced tokenization break); this turns the parts
 * into tokens and per-token weights.
 *
 * Text between two special tokens / breaks is encoded as one string (so tokens match what a
 * HuggingFace chat template + tokenizer produce), with `allowSpecial: false` so that message
 * content can never forge a control token. When parts of different weights share a token, the
 * token takes the weight of the part its first byte belongs to.
 *
 * A break is put after each assistant header (`<|im_start|>assistant\n`): the assistant's text
 * is then tokenized exactly as it would be sampled after `renderGenerationPrompt`.
 */

import type { Tokenizer } from '../types.js';

export type Weight = 0 | 1;

export type Part =
  | { kind: 'text'; text: string; weight: Weight }
  | { kind: 'special'; id: number; weight: Weight }
  | { kind: 'break' };

export interface RenderedConversation {
  tokens: number[];
  /** One per token: 1 where the token is trained (loss counted), 0 elsewhere. */
  weights: number[];
}

const utf8 = new TextEncoder();

export function text(value: string, weight: Weight): Part {
  return { kind: 'text', text: value, weight };
}

export function special(id: number, weight: Weight): Part {
  return { kind: 'special', id, weight };
}

export const BREAK: Part = { kind: 'break' };

export function tokenizeParts(tokenizer: Tokenizer, parts: readonly Part[]): RenderedConversation {
  const tokens: number[] = [];
  const weights: number[] = [];
  let run: { text: string; weight: Weight }[] = [];

  const flush = () => {
    const nonEmpty = run.filter((p) => p.text.length > 0);
    run = [];
    if (nonEmpty.length === 0) return;
    const joined = nonEmpty.map((p) => p.text).join('');
    const ids = tokenizer.encode(joined, { allowSpecial: false });
    const first = nonEmpty[0]!.weight;
    if (nonEmpty.every((p) => p.weight === first)) {
      for (const id of ids) {
        tokens.push(id);
        weights.push(first);
      }
      return;
    }
    for (const [id, w] of assignByBytes(tokenizer, nonEmpty, ids)) {
      tokens.push(id);
      weights.push(w);
    }
  };

  for (const part of parts) {
    if (part.kind === 'text') {
      run.push({ text: part.text, weight: part.weight });
      continue;
    }
    flush();
    if (part.kind === 'special') {
      tokens.push(part.id);
      weights.push(part.weight);
    }
  }
  flush();
  return { tokens, weights };
}

/** Weights of a jointly encoded run of differently weighted parts, by byte offsets. */
function assignByBytes(
  tokenizer: Tokenizer,
  parts: readonly { text: string; weight: Weight }[],
  ids: readonly number[],
): [number, Weight][] {
  const partEnds: number[] = [];
  let end = 0;
  for (const p of parts) {
    end += utf8.encode(p.text).length;
    partEnds.push(end);
  }
  const lengths = ids.map((id) => tokenizer.tokenBytes(id).length);
  const total = lengths.reduce((a, b) => a + b, 0);
  if (total !== end) {
    // The tokenizer changed the bytes (e.g. NFC normalisation), so offsets cannot be mapped:
    // encode the parts one by one instead.
    const out: [number, Weight][] = [];
    for (const p of parts) {
      for (const id of tokenizer.encode(p.text, { allowSpecial: false })) out.push([id, p.weight]);
    }
    return out;
  }
  const out: [number, Weight][] = [];
  let offset = 0;
  let partIndex = 0;
  ids.forEach((id, i) => {
    while (partIndex < parts.length - 1 && offset >= partEnds[partIndex]!) partIndex++;
    out.push([id, parts[partIndex]!.weight]);
    offset += lengths[i]!;
  });
  return out;
}
