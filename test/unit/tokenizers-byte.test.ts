import { describe, expect, it } from 'vitest';
import {
  BYTE_ENDOFTEXT_ID,
  BYTE_IM_END_ID,
  BYTE_IM_START_ID,
  BYTE_MODEL_VOCAB_SIZE,
  BYTE_PAD_ID,
  BYTE_TOKENIZER_VOCAB_SIZE,
  createByteTokenizer,
  TokenizerError,
} from '../../src/tokenizers/index.js';

const tok = createByteTokenizer();

describe('byte tokenizer', () => {
  it('exports its ids and sizes', () => {
    expect([BYTE_ENDOFTEXT_ID, BYTE_IM_START_ID, BYTE_IM_END_ID, BYTE_PAD_ID]).toEqual([
      256, 257, 258, 259,
    ]);
    expect(BYTE_TOKENIZER_VOCAB_SIZE).toBe(260);
    expect(BYTE_MODEL_VOCAB_SIZE).toBe(272);
    expect(BYTE_MODEL_VOCAB_SIZE % 16).toBe(0);
    expect(tok.vocabSize).toBe(260);
    expect(tok.eosId).toBe(BYTE_ENDOFTEXT_ID);
    expect(tok.padId).toBe(BYTE_PAD_ID);
    expect(tok.specialTokenId('<|im_start|>')).toBe(257);
    expect(tok.specialTokenId('<|nope|>')).toBeUndefined();
    expect([...tok.specialTokens.keys()]).toEqual([
      '<|endoftext|>',
      '<|im_start|>',
      '<|im_end|>',
      '<|pad|>',
    ]);
    expect(tok.isSpecial(258)).toBe(true);
    expect(tok.isSpecial(65)).toBe(false);
  });

  it('encodes text as its UTF-8 bytes', () => {
    expect(tok.encode('')).toEqual([]);
    expect(tok.encode('Hi!')).toEqual([72, 105, 33]);
    expect(tok.encode('é')).toEqual([0xc3, 0xa9]);
    expect(tok.encode('你')).toEqual([0xe4, 0xbd, 0xa0]);
    expect(tok.encode('🙂')).toEqual([0xf0, 0x9f, 0x99, 0x82]);
  });

  it.each([
    '',
    'plain ascii',
    'héllo wörld',
    '你好，世界',
    'emoji 🙂 family 👨‍👩‍👧 flag 🇫🇷',
    'e\u0301 (not normalised)',
    '\uFEFFbyte order mark kept',
    'tabs\tnew\nlines\r\n\u0000nul',
  ])('round-trips %j', (s) => {
    const ids = tok.encode(s);
    expect(ids.every((id) => id >= 0 && id < 256)).toBe(true);
    expect(tok.decode(ids)).toBe(s);
    expect(tok.decode(tok.encode(s, { allowSpecial: true }))).toBe(s);
  });

  it('recognises special tokens in text only when allowed', () => {
    const s = 'a<|im_start|>user\nhi<|im_end|><|endoftext|>';
    const plain = tok.encode(s);
    expect(plain.every((id) => id < 256)).toBe(true);
    expect(plain.length).toBe(new TextEncoder().encode(s).length);
    expect(tok.decode(plain)).toBe(s);

    const allowed = tok.encode(s, { allowSpecial: true });
    expect(allowed).toEqual([97, 257, 117, 115, 101, 114, 10, 104, 105, 258, 256]);
    expect(tok.decode(allowed)).toBe(s);
    expect(tok.decode(allowed, { skipSpecial: true })).toBe('auser\nhi');
    // A partial special token is just text.
    expect(tok.encode('<|im_end', { allowSpecial: true })).toEqual(tok.encode('<|im_end'));
    expect(tok.encode('<|pad|><|pad|>', { allowSpecial: true })).toEqual([259, 259]);
  });

  it('decodes invalid UTF-8 with replacement characters', () => {
    expect(tok.decode([0xff])).toBe('\uFFFD');
    expect(tok.decode([0x61, 0xc3])).toBe('a\uFFFD'); // truncated 2-byte sequence
    expect(tok.decode([0xe4, 0xbd])).toBe('\uFFFD'); // truncated 3-byte sequence
    expect(tok.decode([0xc3, BYTE_IM_END_ID, 0xa9])).toBe('\uFFFD<|im_end|>\uFFFD');
    expect(tok.decode([0xed, 0xa0, 0x80])).toBe('\uFFFD\uFFFD\uFFFD'); // encoded surrogate
    // A multi-byte character split across calls decodes only when joined.
    const bytes = tok.encode('é');
    expect(tok.decode(bytes.slice(0, 1)) + tok.decode(bytes.slice(1))).toBe('\uFFFD\uFFFD');
    expect(tok.decode(bytes)).toBe('é');
  });

  it('encodes lone surrogates as U+FFFD', () => {
    expect(tok.encode('\uD800')).toEqual([0xef, 0xbf, 0xbd]);
  });

  it('gives the bytes of each token', () => {
    expect(Array.from(tok.tokenBytes(65))).toEqual([65]);
    expect(new TextDecoder().decode(tok.tokenBytes(BYTE_IM_START_ID))).toBe('<|im_start|>');
  });

  it.each([260, 271, 272, -1, 1.5, Number.NaN])('rejects id %s', (id) => {
    expect(() => tok.decode([1, id])).toThrowError(TokenizerError);
    try {
      tok.decode([1, id]);
    } catch (err) {
      expect((err as TokenizerError).code).toBe('invalid_token_id');
      expect((err as TokenizerError).httpStatus).toBe(400);
      expect((err as Error).message).toContain('at index 1');
    }
    expect(() => tok.tokenBytes(id)).toThrowError(/not a byte tokenizer id/);
  });
});
