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
import { loadHfTokenizer } from './hf.js';
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
