// The base tensors a configuration has, by HF name and shape: one definition for the engine's
// loaders, the serving graph and the validation of imported model directories. (The native
// engine builds the same set; test/engine/config.test.ts checks the two agree.)
import type { ModelConfig } from './config.js';

/** Base tensors (no adapters) in HF layout: linear weights [out, in], biases and norms [n]. */
export function baseTensorShapes(c: ModelConfig): Map<string, number[]> {
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const out = new Map<string, number[]>();
  out.set('model.embed_tokens.weight', [c.vocabSize, H]);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    out.set(`${p}.input_layernorm.weight`, [H]);
    out.set(`${p}.self_attn.q_proj.weight`, [q, H]);
    out.set(`${p}.self_attn.k_proj.weight`, [kv, H]);
    out.set(`${p}.self_attn.v_proj.weight`, [kv, H]);
    out.set(`${p}.self_attn.o_proj.weight`, [H, q]);
    if (c.qkvBias) {
      out.set(`${p}.self_attn.q_proj.bias`, [q]);
      out.set(`${p}.self_attn.k_proj.bias`, [kv]);
      out.set(`${p}.self_attn.v_proj.bias`, [kv]);
    }
    if (c.oProjBias) out.set(`${p}.self_attn.o_proj.bias`, [H]);
    if (c.qkNorm) {
      out.set(`${p}.self_attn.q_norm.weight`, [c.headDim]);
      out.set(`${p}.self_attn.k_norm.weight`, [c.headDim]);
    }
    out.set(`${p}.post_attention_layernorm.weight`, [H]);
    out.set(`${p}.mlp.gate_proj.weight`, [I, H]);
    out.set(`${p}.mlp.up_proj.weight`, [I, H]);
    out.set(`${p}.mlp.down_proj.weight`, [H, I]);
  }
  out.set('model.norm.weight', [H]);
  if (!c.tieWordEmbeddings) out.set('lm_head.weight', [c.vocabSize, H]);
  return out;
}
