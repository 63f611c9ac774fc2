/**
 * Writes the byte tokenizer's HF files (tokenizer.json, tokenizer_config.json with the chat
 * template; src/tokenizers/byte-hf-files.ts) into a model directory, by default the bundled
 * model's, without touching its weights. `npx tsx scripts/write-tokenizer-files.ts [--dir D]`.
 * test/unit/tokenizer-hf-files.test.ts fails when the committed files differ from what this
 * writes.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { bundledModelDir } from '../src/catalog/bundled.js';
import { byteTokenizerFiles } from '../src/tokenizers/byte-hf-files.js';

const { values } = parseArgs({ options: { dir: { type: 'string', default: bundledModelDir() } } });
const dir = values.dir;
const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as {
  max_position_embeddings: number;
};
for (const [name, text] of Object.entries(byteTokenizerFiles(config.max_position_embeddings))) {
  await writeFile(join(dir, name), text);
  console.log(`wrote ${join(dir, name)}`);
}
