import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { bundledModelDir } from '../../src/catalog/bundled.js';
import { parseRawSafetensors, tensorBytes } from '../../src/checkpoints/deltas/raw-safetensors.js';
import { readSafetensors } from '../../src/checkpoints/safetensors.js';
import {
  cachePrefix,
  type DecoderWeight,
  expectedWeightNames,
  expectedWeightShape,
  exportOnnxModel,
  OnnxDecoder,
  OnnxExportError,
  type WeightDtype,
} from '../../src/deployments/onnx/index.js';
import { parseHfConfig, TransformerModel } from '../../src/engine/index.js';

const dir = bundledModelDir();

function mae(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs((a[i] as number) - (b[i] as number));
  return s / a.length;
}

describe('ONNX export served by onnxruntime-node', () => {
  it('matches the engine logprobs (prefill and KV-cache decode) under 1e-4 mean absolute', async () => {
    const model = await TransformerModel.fromDirectory(dir, { threads: 1 });
    const weights = (await readSafetensors(`${dir}/model.safetensors`)).tensors;
    const dec = await OnnxDecoder.create(model.config, weights);
    const V = model.config.vocabSize;
    const toks = Array.from(
      Buffer.from('The quick brown fox jumps over the lazy dog. 0123456789 {"a": [1, 2]}'),
    );
    const eng = model.forward([{ tokens: toks.slice(0, -1), targets: toks.slice(1) }]);
    const { logprobs } = await dec.promptLogprobs(toks);
    let mae = 0;
    for (let i = 1; i < toks.length; i++)
      mae += Math.abs((logprobs[i] as number) - (eng[i - 1] as number));
    mae /= toks.length - 1;
    // decode one token at a time after a 7-token prefill
    let r = await dec.step(toks.slice(0, 7));
    let maeDecode = 0;
    for (let i = 7; i < toks.length; i++) {
      const rows = r.logprobs.length / V;
      maeDecode += Math.abs(
        (r.logprobs[(rows - 1) * V + (toks[i] as number)] as number) - (eng[i - 1] as number),
      );
      r = await dec.step([toks[i] as number], r.cache);
    }
    maeDecode /= toks.length - 7;
    console.log(
      JSON.stringify({ onnx_logprob_mae_prefill: mae, onnx_logprob_mae_decode: maeDecode }),
    );
    expect(mae).toBeLessThan(1e-4);
    expect(maeDecode).toBeLessThan(1e-4);
    expect(r.cache.len).toBe(toks.length);
    await dec.release();
  });

  it('weights as graph inputs: same numerics, and withWeights swaps a snapshot without a new session', async () => {
    const model = await TransformerModel.fromDirectory(dir, { threads: 1 });
    const weights = (await readSafetensors(`${dir}/model.safetensors`)).tensors;
    const dec = await OnnxDecoder.create(model.config, weights, { weightsAs: 'inputs' });
    const toks = Array.from(Buffer.from('Swap me: 1, 2, 3, 4.'));
    const ref = model.forward([{ tokens: toks.slice(0, -1), targets: toks.slice(1) }]);
    const a = (await dec.promptLogprobs(toks)).logprobs.slice(1) as number[];
    expect(a.reduce((s, v, i) => s + Math.abs(v - (ref[i] as number)), 0) / a.length).toBeLessThan(
      1e-4,
    );
    // a scaled final norm changes every logprob; the swapped decoder matches the engine on it
    const changed = new Map(weights);
    const norm = weights.get('model.norm.weight');
    if (!norm) throw new Error('no final norm');
    changed.set('model.norm.weight', { shape: norm.shape, data: norm.data.map((v) => v * 1.5) });
    const t0 = performance.now();
    const swapped = dec.withWeights(changed);
    const swapMs = performance.now() - t0;
    model.loadTensors(changed);
    const ref2 = model.forward([{ tokens: toks.slice(0, -1), targets: toks.slice(1) }]);
    const b = (await swapped.promptLogprobs(toks)).logprobs.slice(1) as number[];
    expect(b.reduce((s, v, i) => s + Math.abs(v - (ref2[i] as number)), 0) / b.length).toBeLessThan(
      1e-4,
    );
    expect(Math.abs((b[3] as number) - (a[3] as number))).toBeGreaterThan(1e-3);
    // the first decoder still serves the old weights until released
    const again = (await dec.promptLogprobs(toks)).logprobs.slice(1);
    expect(again).toEqual(a);
    console.log(JSON.stringify({ onnx_inputs_swap_ms: swapMs }));
    await dec.release();
    await swapped.release();
  });

  it('a batched decode step over caches of different lengths matches single steps', async () => {
    const config = parseHfConfig(JSON.parse(await readFile(`${dir}/config.json`, 'utf8')));
    const weights = (await readSafetensors(`${dir}/model.safetensors`)).tensors;
    const dec = await OnnxDecoder.create(config, weights);
    const prompts = [5, 1, 12, 30].map((n) => Array.from(Buffer.from(`Seq ${'y'.repeat(n)}:`)));
    const caches = await Promise.all(prompts.map(async (p) => (await dec.step(p)).cache));
    const toks = [65, 66, 67, 68];
    const single = await Promise.all(caches.map((k, i) => dec.step([toks[i] as number], k)));
    const batched = await dec.stepBatch(toks, caches);
    for (let i = 0; i < toks.length; i++) {
      const a = single[i]?.logprobs as Float32Array;
      const b = batched.rows[i] as Float32Array;
      expect(mae(a, b)).toBeLessThan(1e-5);
      expect(batched.caches[i]?.len).toBe((prompts[i] as number[]).length + 1);
    }
    // the grown caches carry on like the single-step ones
    const s2 = await dec.step([70], single[2]?.cache);
    const b2 = await dec.step([70], batched.caches[2]);
    expect(mae(s2.logprobs, b2.logprobs)).toBeLessThan(1e-5);
    await dec.release();
  });

  it('Llama layout (untied lm_head, no q/k norm, 4 query heads per KV head) matches the engine in both weight modes', async () => {
    const config = parseHfConfig({
      model_type: 'llama',
      vocab_size: 96,
      hidden_size: 64,
      intermediate_size: 160,
      num_hidden_layers: 2,
      num_attention_heads: 8,
      num_key_value_heads: 2,
      rms_norm_eps: 1e-5,
      rope_theta: 500000,
      max_position_embeddings: 128,
      tie_word_embeddings: false,
    });
    let seed = 7;
    const rnd = () => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 2 ** 32 - 0.5;
    };
    const weights = new Map(
      expectedWeightNames(config).map((name) => {
        const shape = expectedWeightShape(config, name);
        const n = shape.reduce((a, b) => a * b, 1);
        const data = Float32Array.from({ length: n }, () =>
          name.includes('norm') ? 1 + 0.1 * rnd() : 0.2 * rnd(),
        );
        return [name, { shape, data }] as const;
      }),
    );
    const model = new TransformerModel(config, { threads: 1 });
    model.loadTensors(new Map(weights));
    const toks = Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % 96);
    const ref = model.forward([{ tokens: toks.slice(0, -1), targets: toks.slice(1) }]);
    for (const weightsAs of ['initializers', 'inputs'] as const) {
      const dec = await OnnxDecoder.create(config, weights, { weightsAs });
      const lp = (await dec.promptLogprobs(toks)).logprobs.slice(1) as number[];
      expect(mae(lp, ref)).toBeLessThan(1e-4);
      let r = await dec.step(toks.slice(0, 5));
      const V = config.vocabSize;
      const got: number[] = [];
      for (let i = 5; i < toks.length; i++) {
        got.push(r.logprobs[(r.logprobs.length / V - 1) * V + (toks[i] as number)] as number);
        r = await dec.step([toks[i] as number], r.cache);
      }
      expect(mae(got, Array.from(ref).slice(4))).toBeLessThan(1e-4);
      await dec.release();
    }
  });

  it('builds from the raw bfloat16 bytes of the file (no conversion in JS) with the same logprobs', async () => {
    const config = parseHfConfig(JSON.parse(await readFile(`${dir}/config.json`, 'utf8')));
    const file = await readFile(`${dir}/model.safetensors`);
    const st = parseRawSafetensors(file, 'model.safetensors');
    const raw = new Map<string, DecoderWeight>(
      st.entries.map((e) => [
        e.name,
        { shape: e.shape, dtype: e.dtype as WeightDtype, bytes: tensorBytes(st, e) },
      ]),
    );
    expect(st.entries[0]?.dtype).toBe('BF16');
    const f32 = (await readSafetensors(`${dir}/model.safetensors`)).tensors;
    const toks = Array.from(Buffer.from('Raw bytes in, same numbers out.'));
    // bit for bit in each mode (the two modes run different matmul kernels)
    for (const weightsAs of ['initializers', 'inputs'] as const) {
      const ref = await OnnxDecoder.create(config, f32, { weightsAs });
      const dec = await OnnxDecoder.create(config, raw, { weightsAs });
      expect((await dec.promptLogprobs(toks)).logprobs).toEqual(
        (await ref.promptLogprobs(toks)).logprobs,
      );
      await dec.release();
      await ref.release();
    }
  });

  it('a step from an older cache value forks: every continuation is bit for bit an unshared one', async () => {
    const config = parseHfConfig(JSON.parse(await readFile(`${dir}/config.json`, 'utf8')));
    const weights = (await readSafetensors(`${dir}/model.safetensors`)).tensors;
    const dec = await OnnxDecoder.create(config, weights);
    const V = config.vocabSize;
    const last = (lp: Float32Array) => lp.subarray(lp.length - V);
    const p = Array.from(Buffer.from('Fork here: '));
    const base = await dec.step(p);
    const a = await dec.step([65], base.cache); // appends in place
    const b = await dec.step([66], base.cache); // base is no longer the latest: copies
    const a2 = await dec.step([67], a.cache);
    // the same steps along an unshared chain: bit for bit
    const chain = async (...t: number[]) => {
      let r = await dec.step(p);
      for (const x of t) r = await dec.step([x], r.cache);
      return last(r.logprobs);
    };
    expect(last(b.logprobs)).toEqual(await chain(66));
    expect(last(a2.logprobs)).toEqual(await chain(65, 67));
    // a prefix of a longer cache continues from the shorter length
    const cut = await dec.step([68], cachePrefix(a2.cache, p.length));
    expect(last(cut.logprobs)).toEqual(await chain(68));
    expect(cut.cache.len).toBe(p.length + 1);
    await dec.release();
  });

  it('refuses weights that do not fit the config, naming the tensor', async () => {
    const config = parseHfConfig({
      model_type: 'llama',
      vocab_size: 16,
      hidden_size: 8,
      intermediate_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      head_dim: 4,
      tie_word_embeddings: true,
    });
    expect(() => exportOnnxModel(config, new Map())).toThrow(OnnxExportError);
    expect(() => exportOnnxModel(config, new Map())).toThrow(
      /missing weight model.embed_tokens.weight/,
    );
  });
});
