// HF model directories and PEFT adapters made from the parity fixtures, for the tests that
// import models (test/e2e/model-import.test.ts, test/control-plane/model-download.test.ts).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exportPeftAdapter } from '../../src/checkpoints/exports/index.js';
import { parseSafetensors } from '../../src/checkpoints/safetensors.js';
import { parseHfConfig, TransformerModel } from '../../src/engine/index.js';
import { tempDir } from '../checkpoints/helpers.js';

export const PARITY = join(import.meta.dirname, '..', 'fixtures', 'parity');

/** The files of a full model directory made by `fixtureDir`. */
export const FULL = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];

/** The files of a PEFT adapter made by `adapterDir`. */
export const ADAPTER = ['adapter_config.json', 'adapter_model.safetensors'];

/** A minimal fast-tokenizer file whose largest id is `maxId`. */
export function tokenizerJson(maxId: number): string {
  const vocab: Record<string, number> = {};
  for (let i = 0; i < maxId; i++) vocab[`t${i}`] = i;
  return JSON.stringify({
    version: '1.0',
    model: { type: 'BPE', vocab, merges: [] },
    added_tokens: [{ id: maxId, content: '<|endoftext|>', special: true }],
  });
}

/** An HF directory from a parity fixture (config as transformers 5 writes it, weights, tokenizer). */
export async function fixtureDir(
  name: string,
  patch: Record<string, unknown> = {},
): Promise<string> {
  const dir = tempDir('import-');
  const config = JSON.parse(
    await readFile(join(PARITY, name, 'config.transformers5.json'), 'utf8'),
  ) as Record<string, unknown>;
  await writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, ...patch }));
  await writeFile(
    join(dir, 'model.safetensors'),
    await readFile(join(PARITY, name, 'model.safetensors')),
  );
  await writeFile(join(dir, 'tokenizer.json'), tokenizerJson(Number(config.vocab_size) - 1));
  await writeFile(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify({ eos_token: '<|endoftext|>' }),
  );
  return dir;
}

/** The PEFT adapter (r=4, alpha=8) of a parity LoRA case, exported as PEFT writes it. */
export async function adapterDir(name: string): Promise<string> {
  const config = parseHfConfig(
    JSON.parse(await readFile(join(PARITY, name, 'config.json'), 'utf8')),
  );
  const model = new TransformerModel(config, { threads: 1, lora: { rank: 4, alpha: 8 } });
  model.loadTensors(
    parseSafetensors(await readFile(join(PARITY, name, 'adapter.safetensors'))).tensors,
    { partial: true },
  );
  const dir = join(tempDir('adapter-'), 'adapter');
  await exportPeftAdapter(model, { dir });
  return dir;
}
