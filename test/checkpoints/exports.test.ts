import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { bundledModelDir } from '../../src/catalog/bundled.js';
import { CheckpointError } from '../../src/checkpoints/dcp/index.js';
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  exportHfModel,
  exportMergedModel,
  exportPeftAdapter,
  fromPeftName,
  loadAdapter,
  mergeLinear,
  openAdapterModel,
  readExportManifest,
  storeSource,
  toPeftName,
  verifyExport,
} from '../../src/checkpoints/exports/index.js';
import { writeHfModelDir } from '../../src/checkpoints/hf-model-dir.js';
import { readSafetensors, readShardedSafetensors } from '../../src/checkpoints/safetensors.js';
import type { ModelConfig } from '../../src/engine/config.js';
import { type LoraOptions, TransformerModel } from '../../src/engine/model.js';
import { randomSequences, rng, tinyModel } from '../engine/helpers.js';
import { tempDir, tempStore } from './helpers.js';

const run = promisify(execFile);
const PYTHON = join(
  process.env.TEMPER_PYREF_VENV ?? join(homedir(), '.cache', 'temper', 'pyref'),
  'bin',
  'python',
);

/** A LoRA model with random base weights and a random (non-zero) adapter. */
function loraModel(
  seed: number,
  lora: LoraOptions,
  config: Partial<ModelConfig> = {},
): TransformerModel {
  const model = tinyModel({ seed, lora, config });
  const r = rng(seed + 100);
  const adapter = model.namedTensors((n) => n.includes('.lora_'));
  for (const t of adapter.values())
    for (let i = 0; i < t.data.length; i++) t.data[i] = (r() - 0.5) * 0.6;
  model.loadTensors(adapter, { partial: true });
  return model;
}

function flatLogprobs(model: TransformerModel, seqs: ReturnType<typeof randomSequences>): number[] {
  return Array.from(model.forward(seqs));
}

async function expectCode(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CheckpointError);
  expect((err as CheckpointError).code).toBe(code);
  if (message) expect((err as Error).message).toMatch(message);
}

describe('HF exports', () => {
  it('exports base weights to a store with a committed manifest, loads back, verifies checksums', async () => {
    const model = tinyModel({ seed: 7 });
    const store = await tempStore();
    const manifest = await exportHfModel(
      model,
      { store, prefix: 'exports/step-1' },
      { maxShardBytes: 6000, baseModel: 'accounts/a/models/m', ttlSeconds: 3600 },
    );
    expect(manifest.kind).toBe('hf_base');
    expect(manifest.expireTime).not.toBeNull();
    const names = manifest.files.map((f) => f.path);
    expect(names).toContain('config.json');
    expect(names).toContain('model.safetensors.index.json');
    expect(
      names.filter((n) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(n)).length,
    ).toBeGreaterThan(2);
    const dir = join(store.root, 'exports', 'step-1');
    expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))).toMatchObject({
      model_type: 'qwen3',
      hidden_size: 24,
      torch_dtype: 'float32',
    });
    const back = await TransformerModel.fromDirectory(dir, { threads: 1 });
    const seqs = randomSequences(1, [5, 3]);
    expect(flatLogprobs(back, seqs)).toEqual(flatLogprobs(model, seqs));
    const source = storeSource(store, 'exports/step-1');
    expect((await verifyExport(source)).files.length).toBe(names.length);
    // A second export to the same prefix is refused before anything is written.
    await expectCode(exportHfModel(model, { store, prefix: 'exports/step-1' }), 'already_exists');
    // Corruption is caught by checksum, naming the file.
    const shard = names.find((n) => n.startsWith('model-00002'))!;
    const bytes = readFileSync(join(dir, shard));
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0x40;
    writeFileSync(join(dir, shard), bytes);
    await expectCode(verifyExport(source), 'corrupt', new RegExp(`${shard} fails its checksum`));
    writeFileSync(join(dir, shard), bytes.subarray(0, 100));
    await expectCode(verifyExport(source), 'corrupt', new RegExp(`${shard} has 100 bytes`));
    await expectCode(exportHfModel(model, { store, prefix: '../escape' }), 'invalid_name');
  });

  it('writes bfloat16 on request and passes tokenizer files and generation config through', async () => {
    const base = await TransformerModel.fromDirectory(bundledModelDir(), { threads: 1 });
    const dir = join(tempDir(), 'bf16');
    await exportHfModel(base, { dir }, { dtype: 'BF16', baseModelDir: bundledModelDir() });
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json'])
      expect(readFileSync(join(dir, f)).equals(readFileSync(join(bundledModelDir(), f))), f).toBe(
        true,
      );
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    const baseCfg = JSON.parse(readFileSync(join(bundledModelDir(), 'config.json'), 'utf8'));
    expect(cfg).toEqual({ ...baseCfg, torch_dtype: 'bfloat16' });
    expect(await readExportManifest(storeSource(await tempStore(), 'x'))).toBeNull();
    const header = readFileSync(join(dir, 'model.safetensors'));
    expect(header.subarray(8, 200).toString()).toContain('"BF16"');
    const st = await readSafetensors(join(dir, 'model.safetensors'));
    const w = base.getTensor('model.norm.weight');
    const got = st.tensors.get('model.norm.weight')!.data;
    for (let i = 0; i < w.length; i++)
      expect(Math.abs(got[i]! - w[i]!)).toBeLessThanOrEqual(Math.abs(w[i]!) * 2 ** -8);
    expect(readdirSync(dir).sort()).toEqual([
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'temper_export.json',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
  });

  it('a merged export of a transformers-5 model keeps its config.json text; a changed config is written anew', async () => {
    // the llama3-scaled parity model with its LoRA adapter, its base config as transformers 5 saves it
    const fixture = join(import.meta.dirname, '..', 'fixtures', 'parity', 'llama3_rope_lora');
    const baseDir = tempDir('v5-base-');
    copyFileSync(join(fixture, 'config.transformers5.json'), join(baseDir, 'config.json'));
    copyFileSync(join(fixture, 'model.safetensors'), join(baseDir, 'model.safetensors'));
    const model = await TransformerModel.fromDirectory(baseDir, {
      threads: 1,
      lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] },
    });
    const seqs = randomSequences(3, [40, 9], model.config.vocabSize);
    const ref = flatLogprobs(model, seqs);
    const dir = join(tempDir(), 'merged');
    await exportMergedModel(model, { dir }, { baseModelDir: baseDir });
    const v5 = JSON.parse(readFileSync(join(baseDir, 'config.json'), 'utf8'));
    const { dtype: _d, ...rest } = v5;
    expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))).toEqual({
      ...rest,
      torch_dtype: 'float32',
    });
    expect(flatLogprobs(await TransformerModel.fromDirectory(dir, { threads: 1 }), seqs)).toEqual(
      ref,
    );
    // another RoPE than the base's: the math keys are ours, the base adds only harmless ones
    const other = new TransformerModel(
      { ...model.config, ropeScaling: { type: 'linear', factor: 2 } },
      { threads: 1 },
    );
    const otherDir = join(tempDir(), 'other');
    await exportHfModel(other, { dir: otherDir }, { baseModelDir: baseDir });
    const written = JSON.parse(readFileSync(join(otherDir, 'config.json'), 'utf8'));
    expect(written.rope_parameters).toBeUndefined();
    expect(written.rope_scaling).toEqual({ rope_type: 'linear', factor: 2 });
    expect(written.bos_token_id).toBe(v5.bos_token_id);
    expect((await TransformerModel.fromDirectory(otherDir, { threads: 1 })).config).toEqual(
      other.config,
    );
  });

  it('writeHfModelDir still writes a plain HF directory', async () => {
    const model = tinyModel({ seed: 2 });
    const dir = join(tempDir(), 'plain');
    await writeHfModelDir(dir, {
      config: model.config,
      tensors: model.namedTensors(),
      generationConfig: { eos_token_id: 1 },
      files: { 'README.md': '# hi\n' },
    });
    expect(readdirSync(dir).sort()).toEqual([
      'README.md',
      'config.json',
      'generation_config.json',
      'model.safetensors',
    ]);
    const back = await readShardedSafetensors(dir);
    for (const [n, t] of model.namedTensors()) expect(back.tensors.get(n), n).toEqual(t);
  });
});

describe('PEFT exports', () => {
  const lora = {
    rank: 4,
    alpha: 8,
    targets: ['q_proj', 'v_proj', 'down_proj', 'lm_head'],
  } as const;

  it('maps engine names to PEFT names and back', () => {
    expect(toPeftName('model.layers.3.self_attn.q_proj.lora_A.weight')).toBe(
      'base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight',
    );
    expect(fromPeftName('base_model.model.lm_head.lora_B.weight')).toBe('lm_head.lora_B.weight');
    expect(
      fromPeftName('base_model.model.model.layers.0.mlp.down_proj.lora_A.default.weight'),
    ).toBe('model.layers.0.mlp.down_proj.lora_A.weight');
    expect(fromPeftName('model.layers.0.mlp.down_proj.lora_A.weight')).toBeNull();
  });

  it('round-trips an adapter: export, loadAdapter into a fresh LoRA model, openAdapterModel', async () => {
    const a = loraModel(5, { ...lora, targets: [...lora.targets] });
    const store = await tempStore();
    const baseDir = join(store.root, 'base');
    await exportHfModel(a, { store, prefix: 'base' });
    await exportPeftAdapter(
      a,
      { store, prefix: 'adapter' },
      { baseModelNameOrPath: 'accounts/x/models/base' },
    );
    const cfg = JSON.parse((await store.get(`adapter/${ADAPTER_CONFIG}`)).toString());
    expect(cfg).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 4,
      lora_alpha: 8,
      target_modules: ['down_proj', 'lm_head', 'q_proj', 'v_proj'],
      base_model_name_or_path: 'accounts/x/models/base',
    });
    const st = await readSafetensors(join(store.root, 'adapter', ADAPTER_WEIGHTS));
    expect(
      [...st.tensors.keys()].every(
        (k) => k.startsWith('base_model.model.') && k.includes('.lora_'),
      ),
    ).toBe(true);
    expect(st.tensors.has('base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight')).toBe(
      true,
    );

    const b = tinyModel({ seed: 5, lora: { ...lora, targets: [...lora.targets] } });
    const seqs = randomSequences(3, [6, 4]);
    expect(flatLogprobs(b, seqs)).not.toEqual(flatLogprobs(a, seqs));
    await loadAdapter(b, storeSource(store, 'adapter'));
    expect(flatLogprobs(b, seqs)).toEqual(flatLogprobs(a, seqs));
    const c = await openAdapterModel(baseDir, join(store.root, 'adapter'), { threads: 1 });
    expect(c.lora).toMatchObject({ rank: 4, alpha: 8 });
    expect(flatLogprobs(c, seqs)).toEqual(flatLogprobs(a, seqs));

    const wrongRank = tinyModel({
      seed: 5,
      lora: { rank: 2, alpha: 8, targets: [...lora.targets] },
    });
    await expectCode(loadAdapter(wrongRank, join(store.root, 'adapter')), 'incompatible', /r=4/);
    const fewer = tinyModel({ seed: 5, lora: { rank: 4, alpha: 8, targets: ['q_proj'] } });
    await expectCode(loadAdapter(fewer, join(store.root, 'adapter')), 'incompatible', /targets/);
    await expectCode(loadAdapter(b, join(store.root, 'nowhere')), 'not_found');
  });

  it('checks an exported adapter against its manifest checksums', async () => {
    const a = loraModel(6, { rank: 2, alpha: 4, targets: ['q_proj'] });
    const dir = join(tempDir(), 'ad');
    await exportPeftAdapter(a, { dir });
    const file = join(dir, ADAPTER_WEIGHTS);
    const bytes = readFileSync(file);
    bytes[bytes.length - 2] = bytes[bytes.length - 2]! ^ 0x10;
    writeFileSync(file, bytes);
    await expectCode(
      loadAdapter(a, dir),
      'corrupt',
      /adapter_model.safetensors fails its checksum/,
    );
  });

  it('refuses adapters it cannot apply exactly', async () => {
    const a = loraModel(5, { rank: 2, alpha: 4, targets: ['q_proj'] });
    const dir = join(tempDir(), 'ad');
    await exportPeftAdapter(a, { dir });
    const cfg = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG), 'utf8'));
    writeFileSync(join(dir, ADAPTER_CONFIG), JSON.stringify({ ...cfg, use_rslora: true }));
    await expectCode(loadAdapter(a, dir), 'incompatible', /use_rslora/);
    writeFileSync(join(dir, ADAPTER_CONFIG), JSON.stringify({ ...cfg, peft_type: 'IA3' }));
    await expectCode(loadAdapter(a, dir), 'incompatible', /LoRA/);
  });

  it('merges W + (alpha/r)·B·A', () => {
    const w = Float32Array.from([1, 2, 3, 4, 5, 6]); // [2, 3]
    const a = Float32Array.from([1, 0, -1]); // [1, 3]
    const b = Float32Array.from([2, -1]); // [2, 1]
    expect(Array.from(mergeLinear(w, a, b, 0.5, 2, 3, 1))).toEqual([2, 2, 2, 3.5, 5, 6.5]);
  });

  it('agrees with transformers + PEFT: PeftModel.from_pretrained logits and merge_and_unload', async () => {
    expect(existsSync(PYTHON), `${PYTHON} missing: run scripts/setup.sh`).toBe(true);
    const cases = [
      {
        name: 'qwen3-untied',
        lora: {
          rank: 4,
          alpha: 8,
          targets: [
            'q_proj',
            'k_proj',
            'v_proj',
            'o_proj',
            'gate_proj',
            'up_proj',
            'down_proj',
            'lm_head',
          ],
        },
        config: {},
      },
      {
        name: 'llama-tied',
        lora: { rank: 2, alpha: 6, targets: ['q_proj', 'v_proj', 'up_proj'] },
        config: { qkNorm: false, tieWordEmbeddings: true },
      },
      {
        // q/k/v biases under LoRA adapters of the biased projections
        name: 'qwen2-bias',
        lora: { rank: 2, alpha: 4, targets: ['q_proj', 'k_proj', 'v_proj', 'down_proj'] },
        config: { qkNorm: false, qkvBias: true, modelType: 'qwen2' },
      },
      {
        // Llama attention_bias (q/k/v and o_proj) with llama3 RoPE scaling
        name: 'llama3-attention-bias',
        lora: { rank: 2, alpha: 4, targets: ['o_proj', 'v_proj', 'gate_proj'] },
        config: {
          qkNorm: false,
          qkvBias: true,
          oProjBias: true,
          ropeScaling: {
            type: 'llama3',
            factor: 8,
            lowFreqFactor: 1,
            highFreqFactor: 4,
            originalMaxPositions: 8,
          },
        },
      },
      {
        name: 'mistral-linear-rope',
        lora: { rank: 2, alpha: 4, targets: ['q_proj', 'k_proj'] },
        config: { qkNorm: false, modelType: 'mistral', ropeScaling: { type: 'linear', factor: 3 } },
      },
    ] as const;
    const root = tempDir('peft-x-');
    const seqs = randomSequences(9, [7, 5]);
    const inputs = [];
    const models = [];
    for (const c of cases) {
      const model = loraModel(11, { ...c.lora, targets: [...c.lora.targets] }, c.config);
      const dir = (k: string) => join(root, c.name, k);
      await exportHfModel(model, { dir: dir('base') });
      await exportPeftAdapter(model, { dir: dir('adapter') }, { baseModelNameOrPath: dir('base') });
      await exportMergedModel(model, { dir: dir('merged') }, { maxShardBytes: 10_000 });
      inputs.push({
        base_dir: dir('base'),
        adapter_dir: dir('adapter'),
        merged_dir: dir('merged'),
        resave_dir: dir('resaved'),
        sequences: seqs,
        tied_lm_head: false,
      });
      models.push(model);
    }
    writeFileSync(join(root, 'cases.json'), JSON.stringify(inputs));
    const { stdout } = await run(
      PYTHON,
      [join(import.meta.dirname, 'peft_crosscheck.py'), join(root, 'cases.json')],
      { maxBuffer: 16 << 20 },
    );
    const results = JSON.parse(stdout) as {
      base: number[][];
      peft: number[][];
      merged: number[][];
      adapter_keys_diff: string[];
      adapter_max_diff: number;
      scaling: number[];
      merge_max_diff: number;
      merge_keys_missing: string[];
      merged_tied: boolean;
    }[];
    for (const [i, r] of results.entries()) {
      const model = models[i]!;
      const c = cases[i]!;
      expect(r.adapter_keys_diff, c.name).toEqual([]);
      expect(r.adapter_max_diff, c.name).toBe(0);
      expect(r.scaling, c.name).toEqual([c.lora.alpha / c.lora.rank]);
      let ours = flatLogprobs(model, seqs);
      const close = (theirs: number[][], what: string) => {
        const flat = theirs.flat();
        expect(flat.length).toBe(ours.length);
        const worst = Math.max(...flat.map((x, j) => Math.abs(x - ours[j]!)));
        expect(worst, `${c.name} ${what}: max |Δ logprob|`).toBeLessThan(2e-4);
      };
      close(r.peft, 'PEFT adapter on our base export');
      close(r.merged, 'our merged export in transformers');
      expect(r.merge_max_diff, `${c.name}: merged export vs merge_and_unload`).toBeLessThan(1e-6);
      expect(r.merge_keys_missing, c.name).toEqual([]);
      expect(r.merged_tied, c.name).toBe('tieWordEmbeddings' in c.config);
      expect(readdirSync(inputs[i]!.resave_dir).sort()).toEqual([
        'README.md',
        ADAPTER_CONFIG,
        ADAPTER_WEIGHTS,
      ]);
      const fresh = tinyModel({
        seed: 11,
        lora: { ...c.lora, targets: [...c.lora.targets] },
        config: c.config,
      });
      await loadAdapter(fresh, inputs[i]!.resave_dir);
      expect(
        flatLogprobs(fresh, seqs),
        `${c.name}: adapter saved by PEFT, loaded by loadAdapter`,
      ).toEqual(ours);
      // Without the adapter the engine is the base export (and the adapter did change things).
      model.setAdapterEnabled(false);
      const withAdapter = ours;
      ours = flatLogprobs(model, seqs);
      expect(Math.max(...ours.map((x, j) => Math.abs(x - withAdapter[j]!)))).toBeGreaterThan(1e-2);
      close(r.base, 'our base export in transformers');
      model.setAdapterEnabled(true);
    }
  }, 180_000);
});
