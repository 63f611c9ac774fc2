// Exports our decoder-only transformer (Llama / Qwen3 family, src/engine/config.ts) to an
// ONNX graph with a KV cache: the graph is fixed by the config, the weights are initializers
// named exactly as the HF tensors (model.layers.N.self_attn.q_proj.weight, ...), so a new
// snapshot is served by re-encoding the initializers and opening a new session.
//
// Inputs:  input_ids [batch, seq] int64, position_ids [batch, seq] int64,
//          attention_bias [batch, 1, seq, total] float (0 where visible, -inf where masked),
//          past_key_values.{i}.key / .value [batch, kv_heads, past, head_dim] float
// Outputs: logprobs [batch, seq, vocab] (log-softmax of the logits),
//          present.{i}.key / .value [batch, kv_heads, total, head_dim]
import type { ModelConfig } from '../../engine/config.js';
import {
  encodeModel,
  floatTensor,
  int64Tensor,
  type OnnxNode,
  type OnnxTensor,
  type OnnxValueInfo,
  TensorDataType,
} from './proto.js';

export const OPSET_VERSION = 17;
export const IR_VERSION = 8;

/** Tensors the exported graph needs, by HF name. */
export function expectedWeightNames(c: ModelConfig): string[] {
  const names = ['model.embed_tokens.weight', 'model.norm.weight'];
  if (!c.tieWordEmbeddings) names.push('lm_head.weight');
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    names.push(
      `${p}.input_layernorm.weight`,
      `${p}.post_attention_layernorm.weight`,
      `${p}.self_attn.q_proj.weight`,
      `${p}.self_attn.k_proj.weight`,
      `${p}.self_attn.v_proj.weight`,
      `${p}.self_attn.o_proj.weight`,
      `${p}.mlp.gate_proj.weight`,
      `${p}.mlp.up_proj.weight`,
      `${p}.mlp.down_proj.weight`,
    );
    if (c.qkNorm) names.push(`${p}.self_attn.q_norm.weight`, `${p}.self_attn.k_norm.weight`);
  }
  return names;
}

export function expectedWeightShape(c: ModelConfig, name: string): number[] {
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') return [c.vocabSize, H];
  if (name.endsWith('layernorm.weight') || name === 'model.norm.weight') return [H];
  if (name.endsWith('q_norm.weight') || name.endsWith('k_norm.weight')) return [c.headDim];
  if (name.endsWith('q_proj.weight')) return [q, H];
  if (name.endsWith('k_proj.weight') || name.endsWith('v_proj.weight')) return [kv, H];
  if (name.endsWith('o_proj.weight')) return [H, q];
  if (name.endsWith('gate_proj.weight') || name.endsWith('up_proj.weight')) return [I, H];
  if (name.endsWith('down_proj.weight')) return [H, I];
  throw new Error(`unknown weight ${name}`);
}

export interface WeightTensor {
  shape: number[];
  data: Float32Array;
}

export class OnnxExportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OnnxExportError';
  }
}

/** RoPE tables computed in double precision, rounded to float (as the engine does). */
export function ropeTables(c: ModelConfig): { cos: Float32Array; sin: Float32Array } {
  const half = c.headDim / 2;
  const cos = new Float32Array(c.maxPositions * half);
  const sin = new Float32Array(c.maxPositions * half);
  for (let i = 0; i < half; i++) {
    const invFreq = 1 / c.ropeTheta ** ((2 * i) / c.headDim);
    for (let pos = 0; pos < c.maxPositions; pos++) {
      const angle = pos * invFreq;
      cos[pos * half + i] = Math.cos(angle);
      sin[pos * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  /** Weights-as-inputs mode: the weight inputs the graph declares (name -> dims). */
  readonly weightInputs = new Map<string, number[]>();
  constructor(
    private readonly config: ModelConfig,
    private readonly weightsAsInputs: boolean,
  ) {}

  /** A weight by HF name: an initializer, or a graph input in weights-as-inputs mode. */
  weight(name: string): string {
    if (this.weightsAsInputs) this.weightInputs.set(name, expectedWeightShape(this.config, name));
    return name;
  }

  readonly initializers: OnnxTensor[] = [];
  private counter = 0;
  private consts = new Map<string, string>();

  op(opType: string, inputs: string[], attributes?: OnnxNode['attributes'], hint = opType): string {
    const out = `${hint}_${this.counter++}`;
    this.nodes.push({
      opType,
      inputs,
      outputs: [out],
      name: out,
      ...(attributes ? { attributes } : {}),
    });
    return out;
  }

  /** Names `out` explicitly (graph outputs). */
  opNamed(
    opType: string,
    inputs: string[],
    out: string,
    attributes?: OnnxNode['attributes'],
  ): string {
    this.nodes.push({
      opType,
      inputs,
      outputs: [out],
      name: out,
      ...(attributes ? { attributes } : {}),
    });
    return out;
  }

  ints(values: number[]): string {
    const key = `i64:${values.join(',')}`;
    let name = this.consts.get(key);
    if (!name) {
      name = `const_i64_${this.consts.size}`;
      this.initializers.push(int64Tensor(name, values));
      this.consts.set(key, name);
    }
    return name;
  }

  scalar(value: number): string {
    const key = `f32:${value}`;
    let name = this.consts.get(key);
    if (!name) {
      name = `const_f32_${this.consts.size}`;
      this.initializers.push(floatTensor(name, Float32Array.of(value), []));
      this.consts.set(key, name);
    }
    return name;
  }

  /** RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * w. */
  rmsNorm(x: string, weight: string, eps: number): string {
    const sq = this.op('Mul', [x, x], undefined, 'sq');
    const mean = this.op('ReduceMean', [sq], {
      axes: { kind: 'ints', value: [-1] },
      keepdims: { kind: 'int', value: 1 },
    });
    const rstd = this.op('Reciprocal', [
      this.op('Sqrt', [this.op('Add', [mean, this.scalar(eps)])]),
    ]);
    return this.op('Mul', [this.op('Mul', [x, rstd]), this.weight(weight)], undefined, 'rmsnorm');
  }

  /** x @ W^T for an HF [out, in] weight (the transpose is constant-folded at session start). */
  linear(x: string, weight: string): string {
    if (this.weightsAsInputs) {
      // fed pre-transposed ([in, out]) so no Transpose runs per step
      const [o, i] = expectedWeightShape(this.config, weight) as [number, number];
      this.weightInputs.set(transposedName(weight), [i, o]);
      return this.op('MatMul', [x, transposedName(weight)], undefined, 'linear');
    }
    const wt = this.op('Transpose', [weight], { perm: { kind: 'ints', value: [1, 0] } }, 'wT');
    return this.op('MatMul', [x, wt], undefined, 'linear');
  }

  /** HF rotate-half RoPE on [B, heads, S, hd] with cos/sin [B, 1, S, hd/2]. */
  rope(x: string, cos: string, sin: string, half: number): string {
    const axes = this.ints([3]);
    const x1 = this.op('Slice', [x, this.ints([0]), this.ints([half]), axes]);
    const x2 = this.op('Slice', [x, this.ints([half]), this.ints([2 * half]), axes]);
    const o1 = this.op('Sub', [this.op('Mul', [x1, cos]), this.op('Mul', [x2, sin])]);
    const o2 = this.op('Add', [this.op('Mul', [x2, cos]), this.op('Mul', [x1, sin])]);
    return this.op('Concat', [o1, o2], { axis: { kind: 'int', value: 3 } }, 'rope');
  }
}

export interface ExportOptions {
  graphName?: string;
  /**
   * 'initializers' (default): weights are baked into the model; a new snapshot needs a new
   * session. 'inputs': weights are graph inputs fed on every run (linear weights
   * pre-transposed), so a new snapshot is swapped in without touching the session.
   */
  weightsAs?: 'initializers' | 'inputs';
}

/** The graph-input name of a linear weight fed transposed. */
export function transposedName(name: string): string {
  return `${name}.T`;
}

/**
 * The weight inputs of a weights-as-inputs graph, from HF weights: norms and the embedding as
 * they are, linear weights transposed to [in, out].
 */
export function weightInputTensors(
  c: ModelConfig,
  weights: ReadonlyMap<string, WeightTensor>,
): Map<string, WeightTensor> {
  checkWeights(c, weights);
  const out = new Map<string, WeightTensor>();
  const head = c.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  for (const name of expectedWeightNames(c)) {
    const t = weights.get(name) as WeightTensor;
    const linear = t.shape.length === 2 && (name !== 'model.embed_tokens.weight' || name === head);
    if (name === 'model.embed_tokens.weight' || t.shape.length === 1) out.set(name, t);
    if (linear) {
      const [o, i] = t.shape as [number, number];
      const tr = new Float32Array(o * i);
      transpose(t.data, tr, o, i);
      out.set(transposedName(name), { shape: [i, o], data: tr });
    }
  }
  return out;
}

/** out[k, r] = src[r, k] for src [rows, cols], in cache-sized blocks. */
function transpose(src: Float32Array, out: Float32Array, rows: number, cols: number): void {
  const B = 32;
  for (let r0 = 0; r0 < rows; r0 += B)
    for (let k0 = 0; k0 < cols; k0 += B) {
      const r1 = Math.min(rows, r0 + B);
      const k1 = Math.min(cols, k0 + B);
      for (let r = r0; r < r1; r++)
        for (let k = k0; k < k1; k++) out[k * rows + r] = src[r * cols + k] as number;
    }
}

function checkWeights(c: ModelConfig, weights: ReadonlyMap<string, WeightTensor>): void {
  for (const name of expectedWeightNames(c)) {
    const t = weights.get(name);
    if (!t) throw new OnnxExportError(`missing weight ${name}`);
    const want = expectedWeightShape(c, name);
    if (t.shape.join(',') !== want.join(','))
      throw new OnnxExportError(`${name}: shape [${t.shape}] but the config needs [${want}]`);
  }
}

/**
 * Builds the ONNX model bytes for `config`: with `weights` (HF names) as initializers, or
 * (weightsAs 'inputs', weights null) a graph whose weights are inputs (see weightInputTensors).
 */
export function exportOnnxModel(
  c: ModelConfig,
  weights: ReadonlyMap<string, WeightTensor> | null,
  opts: ExportOptions = {},
): Uint8Array {
  const asInputs = opts.weightsAs === 'inputs';
  const g = new GraphBuilder(c, asInputs);
  if (!asInputs) {
    if (!weights) throw new OnnxExportError('weights are required unless weightsAs is "inputs"');
    checkWeights(c, weights);
    for (const name of expectedWeightNames(c)) {
      const t = weights.get(name) as WeightTensor;
      g.initializers.push(floatTensor(name, t.data, t.shape));
    }
  }
  const half = c.headDim / 2;
  const { cos, sin } = ropeTables(c);
  g.initializers.push(floatTensor('rope_cos', cos, [c.maxPositions, half]));
  g.initializers.push(floatTensor('rope_sin', sin, [c.maxPositions, half]));

  const inputs: OnnxValueInfo[] = [
    { name: 'input_ids', elemType: TensorDataType.INT64, shape: ['batch', 'seq'] },
    { name: 'position_ids', elemType: TensorDataType.INT64, shape: ['batch', 'seq'] },
    { name: 'attention_bias', elemType: TensorDataType.FLOAT, shape: ['batch', 1, 'seq', 'total'] },
  ];
  const outputs: OnnxValueInfo[] = [
    { name: 'logprobs', elemType: TensorDataType.FLOAT, shape: ['batch', 'seq', c.vocabSize] },
  ];
  const kvShape = (len: string): (string | number)[] => ['batch', c.numKvHeads, len, c.headDim];

  const cosB = g.op('Unsqueeze', [
    g.op('Gather', ['rope_cos', 'position_ids'], { axis: { kind: 'int', value: 0 } }),
    g.ints([1]),
  ]);
  const sinB = g.op('Unsqueeze', [
    g.op('Gather', ['rope_sin', 'position_ids'], { axis: { kind: 'int', value: 0 } }),
    g.ints([1]),
  ]);
  const group = c.numHeads / c.numKvHeads;
  const bias5 = g.op('Unsqueeze', ['attention_bias', g.ints([1])]); // [B,1,1,S,T]
  const scale = g.scalar(1 / Math.sqrt(c.headDim));

  let x = g.op(
    'Gather',
    [g.weight('model.embed_tokens.weight'), 'input_ids'],
    { axis: { kind: 'int', value: 0 } },
    'embed',
  );
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    const pastK = `past_key_values.${l}.key`;
    const pastV = `past_key_values.${l}.value`;
    inputs.push(
      { name: pastK, elemType: TensorDataType.FLOAT, shape: kvShape('past') },
      { name: pastV, elemType: TensorDataType.FLOAT, shape: kvShape('past') },
    );
    outputs.push(
      { name: `present.${l}.key`, elemType: TensorDataType.FLOAT, shape: kvShape('total') },
      { name: `present.${l}.value`, elemType: TensorDataType.FLOAT, shape: kvShape('total') },
    );
    const h = g.rmsNorm(x, `${p}.input_layernorm.weight`, c.rmsNormEps);
    // [B,S,heads*hd] -> [B,S,heads,hd]
    let q = g.op('Reshape', [
      g.linear(h, `${p}.self_attn.q_proj.weight`),
      g.ints([0, 0, c.numHeads, c.headDim]),
    ]);
    let k = g.op('Reshape', [
      g.linear(h, `${p}.self_attn.k_proj.weight`),
      g.ints([0, 0, c.numKvHeads, c.headDim]),
    ]);
    const v = g.op('Reshape', [
      g.linear(h, `${p}.self_attn.v_proj.weight`),
      g.ints([0, 0, c.numKvHeads, c.headDim]),
    ]);
    if (c.qkNorm) {
      q = g.rmsNorm(q, `${p}.self_attn.q_norm.weight`, c.rmsNormEps);
      k = g.rmsNorm(k, `${p}.self_attn.k_norm.weight`, c.rmsNormEps);
    }
    const perm = { perm: { kind: 'ints' as const, value: [0, 2, 1, 3] } };
    q = g.rope(g.op('Transpose', [q], perm), cosB, sinB, half);
    k = g.rope(g.op('Transpose', [k], perm), cosB, sinB, half);
    const vT = g.op('Transpose', [v], perm);
    const axis2 = { axis: { kind: 'int' as const, value: 2 } };
    const kAll = g.opNamed('Concat', [pastK, k], `present.${l}.key`, axis2);
    const vAll = g.opNamed('Concat', [pastV, vT], `present.${l}.value`, axis2);
    // GQA without copying K/V: q [B,kv,group,S,hd] x k [B,kv,1,hd,T]
    const q5 = g.op('Reshape', [q, g.ints([0, c.numKvHeads, group, -1, c.headDim])]);
    const k5 = g.op('Unsqueeze', [kAll, g.ints([2])]);
    const v5 = g.op('Unsqueeze', [vAll, g.ints([2])]);
    const kT = g.op('Transpose', [k5], { perm: { kind: 'ints', value: [0, 1, 2, 4, 3] } });
    const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [q5, kT]), scale]), bias5]);
    const probs = g.op('Softmax', [scores], { axis: { kind: 'int', value: -1 } });
    const ctx5 = g.op('MatMul', [probs, v5]); // [B,kv,group,S,hd]
    const ctx = g.op('Reshape', [ctx5, g.ints([0, c.numHeads, -1, c.headDim])]);
    const ctxT = g.op('Reshape', [
      g.op('Transpose', [ctx], perm),
      g.ints([0, 0, c.numHeads * c.headDim]),
    ]);
    x = g.op('Add', [x, g.linear(ctxT, `${p}.self_attn.o_proj.weight`)], undefined, 'resid');
    const h2 = g.rmsNorm(x, `${p}.post_attention_layernorm.weight`, c.rmsNormEps);
    const gate = g.linear(h2, `${p}.mlp.gate_proj.weight`);
    const up = g.linear(h2, `${p}.mlp.up_proj.weight`);
    const act = g.op(
      'Mul',
      [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up],
      undefined,
      'swiglu',
    );
    x = g.op('Add', [x, g.linear(act, `${p}.mlp.down_proj.weight`)], undefined, 'resid');
  }
  const hf = g.rmsNorm(x, 'model.norm.weight', c.rmsNormEps);
  const head = c.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  const logits = g.linear(hf, head);
  g.opNamed('LogSoftmax', [logits], 'logprobs', { axis: { kind: 'int', value: -1 } });

  for (const [name, dims] of g.weightInputs)
    inputs.push({ name, elemType: TensorDataType.FLOAT, shape: dims });
  return encodeModel({
    irVersion: IR_VERSION,
    opsetVersion: OPSET_VERSION,
    producerName: 'temper',
    graph: {
      name: opts.graphName ?? 'temper_decoder',
      nodes: g.nodes,
      initializers: g.initializers,
      inputs,
      outputs,
    },
  });
}
