// Tokenizer files inside an HF-layout model directory, and loading the right tokenizer for
// a directory: our byte tokenizer is marked by `temper_tokenizer: "byte"` in
// tokenizer_config.json (directories written before the HF files existed say
// `tokenizer_class: "TemperByteTokenizer"`); anything else with a tokenizer.json is a
// HuggingFace tokenizer. byte-hf-files.ts writes the byte tokenizer's files.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createByteTokenizer } from './byte.js';
import { TEMPER_TOKENIZER_FIELD } from './byte-hf-files.js';
import { TokenizerError } from './errors.js';
import { loadHfTokenizer } from './hf.js';
import { getRenderer } from './renderers/index.js';
import { JinjaRenderer } from './renderers/jinja.js';
import type { Renderer } from './renderers/types.js';
import type { Tokenizer } from './types.js';

export { byteTokenizerFiles } from './byte-hf-files.js';

/** The tokenizer_class of byte-tokenizer directories written before tokenizer.json was. */
export const BYTE_TOKENIZER_CLASS = 'TemperByteTokenizer';

/** The tokenizer a model directory declares. */
export async function loadModelTokenizer(dir: string): Promise<Tokenizer> {
  const configPath = join(dir, 'tokenizer_config.json');
  if (existsSync(configPath)) {
    const config = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
    if (
      config[TEMPER_TOKENIZER_FIELD] === 'byte' ||
      config.tokenizer_class === BYTE_TOKENIZER_CLASS
    )
      return createByteTokenizer();
  }
  if (existsSync(join(dir, 'tokenizer.json'))) return loadHfTokenizer(dir);
  throw new Error(
    `${dir}: no tokenizer (expected tokenizer.json, or tokenizer_config.json with ${TEMPER_TOKENIZER_FIELD}: "byte")`,
  );
}

/** The chat renderer a model directory declares (`chat_renderer`), defaulting by tokenizer. */
export async function modelRendererName(dir: string): Promise<'simple' | 'chatml'> {
  const configPath = join(dir, 'tokenizer_config.json');
  if (existsSync(configPath)) {
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { chat_renderer?: string };
    if (config.chat_renderer === 'simple' || config.chat_renderer === 'chatml')
      return config.chat_renderer;
  }
  return 'chatml';
}

/** A model directory's own chat template: chat_template.jinja, else tokenizer_config.json's. */
export async function loadChatTemplate(dir: string): Promise<string | null> {
  const jinjaPath = join(dir, 'chat_template.jinja');
  // transformers writes chat_template.jinja and reads it in preference to the config's copy.
  if (existsSync(jinjaPath)) return readFile(jinjaPath, 'utf8');
  const configPath = join(dir, 'tokenizer_config.json');
  if (!existsSync(configPath)) return null;
  const config = JSON.parse(await readFile(configPath, 'utf8')) as { chat_template?: unknown };
  const t = config.chat_template;
  if (t === undefined || t === null) return null;
  if (typeof t === 'string') return t;
  // The list form ({name, template}[]): the `default` one is what apply_chat_template uses.
  if (Array.isArray(t)) {
    const named = t.find((e) => (e as { name?: unknown }).name === 'default') as
      | { template?: unknown }
      | undefined;
    if (typeof named?.template === 'string') return named.template;
  }
  throw new TokenizerError(
    'invalid_tokenizer_files',
    `${configPath}: chat_template must be a string or a list with a "default" entry`,
  );
}

/** The special-token strings a chat template may use, from tokenizer_config.json. */
async function specialTokenStrings(dir: string): Promise<Record<string, string>> {
  const configPath = join(dir, 'tokenizer_config.json');
  if (!existsSync(configPath)) return {};
  const config = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
  const out: Record<string, string> = {};
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
    const v = config[key];
    if (typeof v === 'string') out[key] = v;
    else if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string')
      out[key] = (v as { content: string }).content;
  }
  return out;
}

/** Stop tokens: the tokenizer's eos and generation_config.json's `eos_token_id` (one or a list). */
async function stopTokenIds(dir: string, tokenizer: Tokenizer): Promise<number[]> {
  const ids = [tokenizer.eosId];
  const genPath = join(dir, 'generation_config.json');
  if (existsSync(genPath)) {
    const gen = JSON.parse(await readFile(genPath, 'utf8')) as { eos_token_id?: unknown };
    const e = gen.eos_token_id;
    for (const id of Array.isArray(e) ? e : [e])
      if (Number.isInteger(id) && (id as number) >= 0 && (id as number) < tokenizer.vocabSize)
        ids.push(id as number);
  }
  return [...new Set(ids)];
}

/**
 * The renderer for a model directory: a built-in one where tokenizer_config.json names it
 * (`chat_renderer`, the bundled models), else the model's own chat template, else `chatml`.
 */
export async function loadModelRenderer(dir: string): Promise<Renderer> {
  const tokenizer = await loadModelTokenizer(dir);
  const configPath = join(dir, 'tokenizer_config.json');
  if (existsSync(configPath)) {
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { chat_renderer?: unknown };
    if (typeof config.chat_renderer === 'string')
      return getRenderer(config.chat_renderer, tokenizer);
  }
  const template = await loadChatTemplate(dir);
  if (template === null) return getRenderer('chatml', tokenizer);
  return new JinjaRenderer(tokenizer, {
    template,
    specialTokens: await specialTokenStrings(dir),
    stopTokens: await stopTokenIds(dir, tokenizer),
  });
}
