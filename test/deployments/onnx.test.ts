import { describe, expect, it } from 'vitest';
import { bundledModelDir } from '../../src/catalog/bundled.js';
import { readSafetensors } from '../../src/checkpoints/safetensors.js';
import { exportOnnxModel, OnnxDecoder, OnnxExportError } from '../../src/deployments/onnx/index.js';
import { parseHfConfig, TransformerModel } from '../../src/engine/index.js';

const dir = bundledModelDir();

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

  it('refuses weights that do not fit the config, naming the tensor', async () => {
    const config = parseHfConfig({
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
