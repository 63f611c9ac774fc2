// Validation of HF model directories before an import: every problem at once, each naming its
// file and field; directories and object-store prefixes alike.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bundledModelDir } from '../../src/catalog/bundled.js';
import {
  ADAPTER_CONFIG,
  exportPeftAdapter,
  storeSource,
} from '../../src/checkpoints/exports/index.js';
import { writeHfModelDir } from '../../src/checkpoints/hf-model-dir.js';
import { parseSafetensors } from '../../src/checkpoints/safetensors.js';
import { parseHfConfig, TransformerModel } from '../../src/engine/index.js';
import {
  type ModelProblem,
  validateAdapterDirectory,
  validateModelDirectory,
} from '../../src/models/index.js';
import { tempDir, tempStore } from '../checkpoints/helpers.js';

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'parity', 'qwen2_bias');

/** A minimal fast-tokenizer file whose largest id is `maxId`. */
function tokenizerJson(maxId: number): string {
  const vocab: Record<string, number> = {};
  for (let i = 0; i <= maxId - 1; i++) vocab[`t${i}`] = i;
  return JSON.stringify({
    version: '1.0',
    model: { type: 'BPE', vocab, merges: [] },
    added_tokens: [{ id: maxId, content: '<|endoftext|>', special: true }],
  });
}

/** A Qwen2 model directory from the parity fixture (its config as transformers 5 saves it). */
function qwen2Dir(): string {
  const dir = tempDir('model-');
  copyFileSync(join(FIXTURE, 'config.transformers5.json'), join(dir, 'config.json'));
  copyFileSync(join(FIXTURE, 'model.safetensors'), join(dir, 'model.safetensors'));
  writeFileSync(join(dir, 'tokenizer.json'), tokenizerJson(39));
  return dir;
}

/** A safetensors file of zeros with the given entries (any dtype, written byte by byte). */
function rawSafetensors(entries: { name: string; dtype: string; shape: number[] }[]): Buffer {
  const width: Record<string, number> = { F32: 4, BF16: 2, F16: 2, I8: 1, U8: 1 };
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const e of entries) {
    const n = e.shape.reduce((a, b) => a * b, 1) * width[e.dtype]!;
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, Buffer.alloc(offset)]);
}

function fields(problems: ModelProblem[]): string[] {
  return problems.map((p) => `${p.file} ${p.field}`).sort();
}

describe('validateModelDirectory', () => {
  it('accepts a Qwen2 directory in transformers 5 layout, and the bundled model', async () => {
    const v = await validateModelDirectory(qwen2Dir());
    expect(v.problems).toEqual([]);
    expect(v.ok).toBe(true);
    expect(v.config).toMatchObject({ modelType: 'qwen2', qkvBias: true, vocabSize: 40 });
    expect(v.tensors).toBe(
      parseSafetensors(readFileSync(join(FIXTURE, 'model.safetensors'))).tensors.size,
    );
    const bundled = await validateModelDirectory(bundledModelDir());
    expect(bundled.problems).toEqual([]);
  });

  it('reads sharded weights through their index, from an object store as from a directory', async () => {
    const config = parseHfConfig(JSON.parse(readFileSync(join(FIXTURE, 'config.json'), 'utf8')));
    const tensors = parseSafetensors(readFileSync(join(FIXTURE, 'model.safetensors'))).tensors;
    const dir = join(tempDir(), 'sharded');
    await writeHfModelDir(dir, {
      config,
      tensors,
      maxShardBytes: 4000,
      files: { 'tokenizer.json': tokenizerJson(39) },
    });
    const local = await validateModelDirectory(dir);
    expect(local.problems).toEqual([]);
    const store = await tempStore();
    for (const f of ['config.json', 'model.safetensors.index.json', 'tokenizer.json'])
      await store.put(`m/${f}`, readFileSync(join(dir, f)));
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    const shards = [...new Set(Object.values(index.weight_map as Record<string, string>))];
    expect(shards.length).toBeGreaterThan(2);
    for (const f of shards) await store.put(`m/${f}`, readFileSync(join(dir, f)));
    const remote = await validateModelDirectory(storeSource(store, 'm'));
    expect(remote.problems).toEqual([]);
    // a shard the index names is gone
    await store.delete(`m/${shards[1]}`);
    const broken = await validateModelDirectory(storeSource(store, 'm'));
    expect(broken.problems).toContainEqual({
      file: shards[1],
      field: '(file)',
      message: 'is missing',
    });
  });

  it('returns every problem at once, each naming its file and field', async () => {
    const dir = qwen2Dir();
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    // a window on the second layer (layer_types spelled out wins over max_window_layers)
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        ...cfg,
        use_sliding_window: true,
        sliding_window: 8,
        layer_types: ['full_attention', 'sliding_attention'],
        num_experts: 4,
      }),
    );
    // the real tensors, but one missing, one reshaped, one quantized and one extra
    const real = parseSafetensors(readFileSync(join(FIXTURE, 'model.safetensors'))).tensors;
    const entries = [...real]
      .filter(([name]) => name !== 'model.layers.1.mlp.up_proj.weight')
      .map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape }));
    const q = entries.find((e) => e.name === 'model.layers.0.self_attn.q_proj.weight')!;
    q.shape = [q.shape[0]!, q.shape[1]! + 1];
    entries.find((e) => e.name === 'model.layers.0.mlp.down_proj.weight')!.dtype = 'I8';
    entries.push({ name: 'model.layers.0.mlp.up_proj.bias', dtype: 'F32', shape: [40] });
    writeFileSync(join(dir, 'model.safetensors'), rawSafetensors(entries));
    writeFileSync(join(dir, 'tokenizer.json'), tokenizerJson(41));
    const v = await validateModelDirectory(dir);
    expect(v.ok).toBe(false);
    expect(fields(v.problems)).toEqual(
      // the config is refused, so neither the tensors nor the tokenizer's ids can be checked
      ['config.json layer_types', 'config.json num_experts'],
    );
    // with the config fixed, the weights' problems come out
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    const w = await validateModelDirectory(dir);
    expect(fields(w.problems)).toEqual(
      [
        'model.safetensors model.layers.0.mlp.down_proj.weight',
        'model.safetensors model.layers.0.mlp.up_proj.bias',
        'model.safetensors model.layers.0.self_attn.q_proj.weight',
        'model.safetensors model.layers.1.mlp.up_proj.weight',
        'tokenizer.json model.vocab',
      ].sort(),
    );
    const msg = (field: string) => w.problems.find((p) => p.field === field)?.message;
    expect(msg('model.layers.0.self_attn.q_proj.weight')).toBe(
      'has shape [48,33] but config.json needs [48,32]',
    );
    expect(msg('model.layers.0.mlp.down_proj.weight')).toMatch(/dtype I8/);
    expect(msg('model.layers.1.mlp.up_proj.weight')).toMatch(/is missing/);
    expect(msg('model.layers.0.mlp.up_proj.bias')).toMatch(/bias this configuration does not have/);
  });

  it('names what is absent or unreadable: config syntax with its line, weights, tokenizer', async () => {
    const dir = tempDir('model-');
    writeFileSync(join(dir, 'config.json'), '{\n  "model_type": "llama",\n  "vocab_size": 32,,\n}');
    writeFileSync(join(dir, 'pytorch_model.bin'), 'not read');
    const v = await validateModelDirectory(dir);
    expect(v.problems).toEqual([
      {
        file: 'config.json',
        field: '(file)',
        message: expect.stringMatching(/^is not valid JSON at line 3, column/),
      },
      {
        file: '(directory)',
        field: 'weights',
        message: expect.stringMatching(
          /found pytorch_model\.bin: convert the weights to safetensors/,
        ),
      },
      {
        file: '(directory)',
        field: 'tokenizer',
        message: expect.stringMatching(/no tokenizer\.json/),
      },
    ]);
    const empty = await validateModelDirectory(join(dir, 'nothing-here'));
    expect(fields(empty.problems)).toEqual([
      '(directory) tokenizer',
      '(directory) weights',
      'config.json (file)',
    ]);
  });

  it('reports a truncated weight file by its header', async () => {
    const dir = qwen2Dir();
    const bytes = readFileSync(join(dir, 'model.safetensors'));
    writeFileSync(join(dir, 'model.safetensors'), bytes.subarray(0, bytes.length - 10));
    mkdirSync(join(dir, 'unrelated'));
    const v = await validateModelDirectory(dir);
    expect(v.problems).toEqual([
      { file: 'model.safetensors', field: '(header)', message: expect.stringMatching(/truncated/) },
    ]);
  });
});

describe('validateAdapterDirectory', () => {
  const dir = join(import.meta.dirname, '..', 'fixtures', 'parity', 'qwen2_lora');
  const config = parseHfConfig(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));

  async function exportedAdapter(): Promise<string> {
    const model = new TransformerModel(config, { threads: 1, lora: { rank: 4, alpha: 8 } });
    model.loadTensors(parseSafetensors(readFileSync(join(dir, 'adapter.safetensors'))).tensors, {
      partial: true,
    });
    const out = join(tempDir(), 'adapter');
    await exportPeftAdapter(model, { dir: out });
    return out;
  }

  it('accepts a LoRA adapter of biased projections on its own base', async () => {
    const v = await validateAdapterDirectory(await exportedAdapter(), config);
    expect(v).toEqual({ ok: true, problems: [], tensors: 28 });
  });

  it('names every tensor that does not fit another base, and adapters it cannot apply', async () => {
    const adapter = await exportedAdapter();
    const wider = { ...config, intermediateSize: config.intermediateSize + 8 };
    const v = await validateAdapterDirectory(adapter, wider);
    // gate/up lora_B and down lora_A of both layers
    expect(v.problems.map((p) => p.field).sort()).toEqual(
      [0, 1].flatMap((l) => [
        `base_model.model.model.layers.${l}.mlp.down_proj.lora_A.weight`,
        `base_model.model.model.layers.${l}.mlp.gate_proj.lora_B.weight`,
        `base_model.model.model.layers.${l}.mlp.up_proj.lora_B.weight`,
      ]),
    );
    expect(v.problems[0]?.message).toMatch(/needs \[/);
    const cfg = JSON.parse(readFileSync(join(adapter, ADAPTER_CONFIG), 'utf8'));
    writeFileSync(join(adapter, ADAPTER_CONFIG), JSON.stringify({ ...cfg, use_dora: true }));
    const dora = await validateAdapterDirectory(adapter, config);
    expect(dora.problems).toEqual([
      { file: ADAPTER_CONFIG, field: '(adapter)', message: expect.stringMatching(/use_dora/) },
    ]);
  });
});
