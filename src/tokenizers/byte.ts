/**
 * The byte-level tokenizer of our small bundled models: ids 0-255 are the bytes of the UTF-8
 * text, then a few special tokens. Models built for it use a padded vocabulary of
 * BYTE_MODEL_VOCAB_SIZE rows so that specials can be added later without reshaping.
 */

import { TokenizerError } from './errors.js';
import { LiteralSplitter } from './split.js';
import type { DecodeOptions, EncodeOptions, Tokenizer } from './types.js';

export const BYTE_ENDOFTEXT_ID = 256;
export const BYTE_IM_START_ID = 257;
export const BYTE_IM_END_ID = 258;
export const BYTE_PAD_ID = 259;

/** Special tokens of the byte tokenizer, by text. */
export const BYTE_SPECIAL_TOKENS: Readonly<Record<string, number>> = Object.freeze({
  '<|endoftext|>': BYTE_ENDOFTEXT_ID,
  '<|im_start|>': BYTE_IM_START_ID,
  '<|im_end|>': BYTE_IM_END_ID,
  '<|pad|>': BYTE_PAD_ID,
});

/** Ids the byte tokenizer defines: 256 bytes + 4 specials. */
export const BYTE_TOKENIZER_VOCAB_SIZE = 260;
/**
 * Vocabulary (embedding / output rows) of models that use the byte tokenizer: 260 rounded up to
 * a multiple of 16, leaving ids 260-271 reserved for future special tokens.
 */
export const BYTE_MODEL_VOCAB_SIZE = 272;

const utf8Encoder = new TextEncoder();

export class ByteTokenizer implements Tokenizer {
  readonly name = 'byte';
  readonly vocabSize = BYTE_TOKENIZER_VOCAB_SIZE;
  readonly eosId = BYTE_ENDOFTEXT_ID;
  readonly padId = BYTE_PAD_ID;
  readonly specialTokens: ReadonlyMap<string, number> = new Map(
    Object.entries(BYTE_SPECIAL_TOKENS),
  );

  private readonly specialText = new Map<number, string>(
    Object.entries(BYTE_SPECIAL_TOKENS).map(([text, id]) => [id, text]),
  );
  private readonly splitter = new LiteralSplitter(Object.keys(BYTE_SPECIAL_TOKENS));

  encode(text: string, options: EncodeOptions = {}): number[] {
    if (!options.allowSpecial) return Array.from(utf8Encoder.encode(text));
    const ids: number[] = [];
    for (const piece of this.splitter.split(text)) {
      if (piece.kind === 'token') ids.push(this.specialTokens.get(piece.text)!);
      else for (const b of utf8Encoder.encode(piece.text)) ids.push(b);
    }
    return ids;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    let out = '';
    let bytes: number[] = [];
    const flush = () => {
      if (bytes.length > 0) {
        // A fresh non-fatal decoder per run: invalid sequences become U+FFFD, a BOM is kept.
        out += new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(
          Uint8Array.from(bytes),
        );
        bytes = [];
      }
    };
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      this.checkId(id, i);
      if (id < 256) {
        bytes.push(id);
        continue;
      }
      flush();
      if (!options.skipSpecial) out += this.specialText.get(id)!;
    }
    flush();
    return out;
  }

  tokenBytes(id: number): Uint8Array {
    this.checkId(id);
    if (id < 256) return Uint8Array.of(id);
    return utf8Encoder.encode(this.specialText.get(id)!);
  }

  specialTokenId(text: string): number | undefined {
    return this.specialTokens.get(text);
  }

  isSpecial(id: number): boolean {
    return this.specialText.has(id);
  }

  private checkId(id: number, index?: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      const where = index === undefined ? '' : ` at index ${index}`;
      throw new TokenizerError(
        'invalid_token_id',
        `token id ${String(id)}${where} is not a byte tokenizer id: ids are integers in [0, ${this.vocabSize}) ` +
          `(ids ${this.vocabSize}-${BYTE_MODEL_VOCAB_SIZE - 1} are reserved model rows; mask them when sampling)`,
      );
    }
  }
}

/** The byte tokenizer. */
export function createByteTokenizer(): ByteTokenizer {
  return new ByteTokenizer();
}
