// Tokenizer files inside an HF-layout model directory, and loading the right tokenizer for
// a directory: our byte tokenizer is marked by `tokenizer_class: "TemperByteTokenizer"` in
// tokenizer_config.json; anything with a tokenizer.json is a HuggingFace tokenizer.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BYTE_SPECIAL_TOKENS, createByteTokenizer } from './byte.js';
import { loadHfTokenizer } from './hf.js';
import type { Tokenizer } from './types.js';

export const BYTE_TOKENIZER_CLASS = 'TemperByteTokenizer';

export function byteTokenizerFiles(): Record<string, string> {
  const config = {
    tokenizer_class: BYTE_TOKENIZER_CLASS,
    eos_token: '<|endoftext|>',
    pad_token: '<|pad|>',
    added_tokens: BYTE_SPECIAL_TOKENS,
    chat_renderer: 'simple',
  };
  return { 'tokenizer_config.json': `${JSON.stringify(config, null, 2)}\n` };
}

/** The tokenizer a model directory declares. */
export async function loadModelTokenizer(dir: string): Promise<Tokenizer> {
  const configPath = join(dir, 'tokenizer_config.json');
  if (existsSync(configPath)) {
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { tokenizer_class?: string };
    if (config.tokenizer_class === BYTE_TOKENIZER_CLASS) return createByteTokenizer();
  }
  if (existsSync(join(dir, 'tokenizer.json'))) return loadHfTokenizer(dir);
  throw new Error(
    `${dir}: no tokenizer (expected tokenizer.json, or tokenizer_config.json with tokenizer_class ${BYTE_TOKENIZER_CLASS})`,
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
