// Token-level pieces of OpenAI responses: how a token is spelled, OpenAI's legacy completions
// `logprobs` (tokens, token_logprobs, top_logprobs, text_offset) and the per-token `content`
// entries of chat (and of Fireworks completions asked with `logprobs: true`).
import { randomUUID } from 'node:crypto';
import type { Renderer, Tokenizer } from '../../tokenizers/index.js';

export interface Alt {
  token: number;
  logprob: number;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
const utf8 = new TextEncoder();

/** Spelling of tokens, as OpenAI does it: the text, or `bytes:\xNN...` for a partial character. */
export class TokenSpelling {
  private readonly cache = new Map<number, { text: string; bytes: number[] }>();
  constructor(private readonly tok: Tokenizer) {}

  private entry(t: number): { text: string; bytes: number[] } {
    let e = this.cache.get(t);
    if (e) return e;
    // ids past the tokenizer (a padded embedding) have no bytes; they are named by id
    const raw = t < this.tok.vocabSize ? this.tok.tokenBytes(t) : utf8.encode(`<|${t}|>`);
    const bytes = Array.from(raw);
    let text: string;
    try {
      text = strictUtf8.decode(raw);
    } catch {
      text = `bytes:${bytes.map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('')}`;
    }
    e = { text, bytes };
    this.cache.set(t, e);
    return e;
  }

  text(t: number): string {
    return this.entry(t).text;
  }

  bytes(t: number): number[] {
    return this.entry(t).bytes;
  }

  /** How many characters a token adds to the text (those whose first byte it holds). */
  chars(t: number): number {
    let n = 0;
    // every byte that is not a UTF-8 continuation byte begins a character
    for (const b of this.entry(t).bytes) if ((b & 0xc0) !== 0x80) n++;
    return n;
  }

  /**
   * Where each token starts in the text the tokens spell, in characters (Unicode code points,
   * as Python counts them), from `start`: a token that begins inside a character starts at it.
   */
  offsets(tokens: readonly number[], start = 0): number[] {
    const out: number[] = [];
    let chars = start;
    for (const t of tokens) {
      const first = this.entry(t).bytes[0];
      // a token that begins with a continuation byte begins inside the previous character
      const inside = first !== undefined && (first & 0xc0) === 0x80 && chars > 0;
      out.push(inside ? chars - 1 : chars);
      chars += this.chars(t);
    }
    return out;
  }

  /** OpenAI's `top_logprobs` dict of one position (the likelier spelling wins a clash). */
  topDict(alts: readonly Alt[]): Record<string, number> {
    const d: Record<string, number> = {};
    for (const a of alts) {
      const k = this.text(a.token);
      if (!(k in d)) d[k] = a.logprob;
    }
    return d;
  }

  /** One `logprobs.content[]` entry. */
  contentEntry(
    token: number,
    logprob: number | null,
    alts: readonly Alt[],
    samplingLogprob?: number | null,
  ): Record<string, unknown> {
    return {
      token: this.text(token),
      token_id: token,
      logprob,
      ...(samplingLogprob !== undefined ? { sampling_logprob: samplingLogprob } : {}),
      bytes: this.bytes(token),
      top_logprobs: alts.map((a) => ({
        token: this.text(a.token),
        token_id: a.token,
        logprob: a.logprob,
        bytes: this.bytes(a.token),
      })),
    };
  }
}

export interface LegacyLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
  /** Extension: the ids the strings spell. */
  token_ids: number[];
}

/**
 * OpenAI's completions `logprobs` for `tokens` whose text starts at character `start` of the
 * choice's text. A null logprob or alternatives list (the first prompt token, which nothing
 * predicts) stays null, as OpenAI sends it.
 */
export function legacyLogprobs(
  sp: TokenSpelling,
  tokens: readonly number[],
  logprobs: readonly (number | null)[],
  alts: readonly (readonly Alt[] | null)[],
  start = 0,
): LegacyLogprobs {
  return {
    tokens: tokens.map((t) => sp.text(t)),
    token_logprobs: [...logprobs],
    top_logprobs: alts.map((a) => (a ? sp.topDict(a) : null)),
    text_offset: sp.offsets(tokens, start),
    token_ids: [...tokens],
  };
}

export interface ToolCallOut {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/**
 * The tool calls in a sampled assistant turn (as the model's chat template writes them), in
 * OpenAI's shape with the arguments as a JSON string, and the content around them; null when
 * the turn calls no tool.
 */
export function parseToolCalls(
  renderer: Renderer,
  tokens: readonly number[],
): { content: string; toolCalls: ToolCallOut[] } | null {
  const parsed = renderer.parseResponse(tokens);
  const calls = parsed.message.toolCalls ?? [];
  if (calls.length === 0) return null;
  return {
    content: parsed.message.content,
    toolCalls: calls.map((t) => ({
      id: t.id ?? `call_${randomUUID().replaceAll('-', '').slice(0, 24)}`,
      type: 'function' as const,
      function: {
        name: t.name,
        arguments: typeof t.arguments === 'string' ? t.arguments : JSON.stringify(t.arguments),
      },
    })),
  };
}
