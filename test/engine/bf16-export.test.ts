// A model whose frozen base the engine keeps in bf16 (baseDtype 'bfloat16') exports, saves and
// reloads like any other: tensorView gives the bf16 storage itself (bits in a Uint16Array), the
// safetensors writer takes it as it is (BF16 files: the very bytes, F32 files: widened exactly).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trainStateTensors } from '../../src/checkpoints/dcp/train-state.js';
import { exportHfModel } from '../../src/checkpoints/exports/hf.js';
import { readSafetensors, type TensorMap } from '../../src/checkpoints/safetensors.js';
import { bf16ToF32, f32ToBf16 } from '../../src/engine/dtype.js';
import { TransformerModel } from '../../src/engine/model.js';
import { randomSequences, randomWeights, TINY } from './helpers.js';

const LORA = { rank: 2, alpha: 4, seed: 5, targets: ['q_proj' as const, 'down_proj' as const] };

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'temper-bf16-export-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function bf16Model(): { model: TransformerModel; weights: TensorMap } {
  const model = new TransformerModel(TINY, { threads: 1, lora: LORA, baseDtype: 'bfloat16' });
  const weights: TensorMap = new Map();
  for (const [name, t] of randomWeights(model, 21))
    weights.set(name, { shape: t.shape, data: bf16ToF32(f32ToBf16(t.data)) });
  model.loadTensors(weights, { partial: true });
  return { model, weights };
}

describe('bf16-stored base', () => {
  it('tensorView gives the bf16 storage itself, float32 tensors stay Float32Array', () => {
    const { model, weights } = bf16Model();
    const name = 'model.layers.0.self_attn.q_proj.weight';
    const view = model.tensorView(name);
    expect(view).toBeInstanceOf(Uint16Array);
    expect(bf16ToF32(view as Uint16Array)).toEqual(weights.get(name)!.data);
    expect(model.tensorView('model.norm.weight')).toBeInstanceOf(Float32Array);
    // A view, not a copy: a later load shows through it.
    const data = new Float32Array(view.length).fill(0.5);
    model.loadTensors(new Map([[name, { shape: weights.get(name)!.shape, data }]]), {
      partial: true,
    });
    expect(bf16ToF32(view as Uint16Array)).toEqual(data);
  });

  for (const dtype of ['F32', 'BF16'] as const)
    it(`round-trips a full export (${dtype} files) into a model that scores identically`, async () => {
      const { model, weights } = bf16Model();
      const out = join(dir, `full-${dtype}`);
      await exportHfModel(model, { dir: out }, { dtype });
      const file = await readSafetensors(join(out, 'model.safetensors'));
      for (const [name, t] of weights) {
        const read = file.tensors.get(name);
        expect(read?.shape, name).toEqual(t.shape);
        expect(read?.data, name).toEqual(t.data);
      }
      // Loaded back (float32 base, and bf16 base again), the base scores bit for bit the same.
      const seqs = randomSequences(3, [9, 14]);
      const expected = new TransformerModel(TINY, { threads: 1 });
      expected.loadTensors(weights);
      // A fresh adapter is the identity (B = 0), so the bf16-base LoRA model scores as its base.
      for (const options of [{}, { lora: LORA, baseDtype: 'bfloat16' as const }]) {
        const back = await TransformerModel.fromDirectory(out, { threads: 1, ...options });
        expect(back.forward(seqs)).toEqual(expected.forward(seqs));
      }
    });

  it('DCP train state with frozen tensors reads the bf16 base widened to float32', () => {
    const { model, weights } = bf16Model();
    const tensors = trainStateTensors(model, { includeFrozen: true });
    const name = 'model.layers.1.mlp.down_proj.weight';
    const entry = [...tensors.entries()].find(([key]) => key.includes(name))?.[1];
    expect(entry && 'read' in entry).toBe(true);
    if (entry && 'read' in entry) expect(entry.read()).toEqual(weights.get(name)!.data);
  });
});
