// Exports our decoder-only transformer (Llama / Mistral / Qwen2 / Qwen3, src/engine/config.ts)
// to an ONNX graph served by onnxruntime's CPU provider. Every weight keeps its HF name and HF
// layout ([out, in] for linear layers, multiplied with FusedMatMul transB=1), so in
// weights-as-inputs mode the tensors of a safetensors file are fed to the session as they
// are, without a copy or a transpose; a hot-load then changes buffers, never the session.
//
// The layers use onnxruntime's fused contrib operators (one kernel where plain ONNX needs
// five to twenty): SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization (RMSNorm,
// with the residual add fused in), RotaryEmbedding (HF rotate-half), GroupQueryAttention
// (causal GQA over a KV cache, each sequence's length from seqlens_k) and QuickGelu (SiLU
// with alpha 1). Fewer nodes is what makes decoding fast: a decode step is ~100 kernels.
//
// Inputs:  input_ids [batch, seq] int64, position_ids [batch, seq] int64 (past length + i),
//          seqlens_k [batch] int32 (past length + seq − 1: the index of the last token),
//          total_sequence_length [] int32 (max over the batch of past length + seq),
//          past_key_values.{i}.key / .value [batch, kv_heads, capacity, head_dim] float (the
//          first past-length rows of each head are used; capacity may be larger)
// Outputs: logprobs [batch, seq, vocab] (log-softmax of the logits),
//          new_kv [batch, seq, 2·layers·kv_heads·head_dim]: each layer's rotated key and value
//          rows of the new tokens (layer-major, key before value), which the caller appends to
//          its cache. Only the new rows leave the session: copying whole caches out of
//          onnxruntime-node on every step costs more than the step's attention.
import { baseTensorShapes, type ModelConfig, ropeInverseFrequencies } from '../../engine/index.js';
import {
  type AttributeValue,
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
const MS = 'com.microsoft';

/** Tensors the exported graph needs, by HF name (the engine's base tensors). */
export function expectedWeightNames(c: ModelConfig): string[] {
  return [...baseTensorShapes(c).keys()];
}

export function expectedWeightShape(c: ModelConfig, name: string): number[] {
  const shape = baseTensorShapes(c).get(name);
  if (!shape) throw new Error(`unknown weight ${name}`);
  return shape;
}

export interface WeightTensor {
  shape: number[];
  data: Float32Array;
}

/** Storage dtypes a weight may arrive in (float32 is what the graph computes in). */
export type WeightDtype = 'F32' | 'BF16' | 'F16' | 'F64';

/**
 * A weight as a snapshot file stores it: little-endian bytes of `dtype` (a view into the file,
 * no copy). The graph converts other dtypes to float32 with a Cast that onnxruntime folds
 * into the weight when the session is built.
 */
export interface RawWeight {
  shape: number[];
  dtype: WeightDtype;
  bytes: Uint8Array;
}

/** What a decoder can be built from: float32 arrays or raw file bytes, by HF name. */
export type DecoderWeight = WeightTensor | RawWeight;

export function isRawWeight(w: DecoderWeight): w is RawWeight {
  return 'bytes' in w;
}

const ONNX_DTYPE = {
  F32: TensorDataType.FLOAT,
  BF16: TensorDataType.BFLOAT16,
  F16: TensorDataType.FLOAT16,
  F64: TensorDataType.DOUBLE,
} as const;
const DTYPE_WIDTH: Record<WeightDtype, number> = { F32: 4, BF16: 2, F16: 2, F64: 8 };

/** A weight's dtype and bytes (a float32 array's own buffer, not a copy). */
export function weightBytes(w: DecoderWeight): { dtype: WeightDtype; bytes: Uint8Array } {
  if (isRawWeight(w)) return w;
  return {
    dtype: 'F32',
    bytes: new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength),
  };
}

export class OnnxExportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OnnxExportError';
  }
}

/**
 * RoPE tables from the engine's inverse frequencies (frequency scaling included), computed in
 * double precision and rounded to float, as the engine does.
 */
export function ropeTables(c: ModelConfig): { cos: Float32Array; sin: Float32Array } {
  const half = c.headDim / 2;
  const cos = new Float32Array(c.maxPositions * half);
  const sin = new Float32Array(c.maxPositions * half);
  const inv = ropeInverseFrequencies(c);
  for (let i = 0; i < half; i++) {
    const invFreq = inv[i] as number;
    for (let pos = 0; pos < c.maxPositions; pos++) {
      const angle = pos * invFreq;
      cos[pos * half + i] = Math.cos(angle);
      sin[pos * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

type Attrs = Record<string, AttributeValue>;
const int = (value: number): AttributeValue => ({ kind: 'int', value });
const float = (value: number): AttributeValue => ({ kind: 'float', value });

/**
 * Where the weights go: graph inputs fed on every run, initializers with their bytes inside
 * the model, or initializers whose bytes are handed to onnxruntime beside the model
 * (`externalData`: no protobuf encoding of megabytes of weights).
 */
type Placement =
  | { kind: 'inputs' }
  | { kind: 'inline'; weights: ReadonlyMap<string, DecoderWeight> }
  | { kind: 'external'; weights: ReadonlyMap<string, DecoderWeight>; data: ExternalData[] };

export interface ExternalData {
  path: string;
  data: Uint8Array;
}

class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  /** Weights-as-inputs mode: the weight inputs the graph declares (name -> dims). */
  readonly weightInputs = new Map<string, number[]>();
  private counter = 0;
  private consts = new Map<string, string>();
  private placed = new Map<string, string>();

  constructor(
    private readonly config: ModelConfig,
    private readonly placement: Placement,
  ) {}

  /** A weight by HF name, as float32 (a graph input, or an initializer cast if need be). */
  weight(name: string): string {
    const done = this.placed.get(name);
    if (done) return done;
    const shape = expectedWeightShape(this.config, name);
    const p = this.placement;
    let out = name;
    if (p.kind === 'inputs') this.weightInputs.set(name, shape);
    else {
      const { dtype, bytes } = weightBytes(p.weights.get(name) as DecoderWeight);
      const t: OnnxTensor = { name, dims: shape, dataType: ONNX_DTYPE[dtype] };
      if (p.kind === 'inline') t.raw = bytes;
      else {
        const path = `w${p.data.length}.bin`;
        p.data.push({ path, data: bytes });
        t.external = { location: path, offset: 0, length: bytes.length };
      }
      this.initializers.push(t);
      if (dtype !== 'F32')
        out = this.op('Cast', [name], { to: int(TensorDataType.FLOAT) }, { hint: `${name}.f32` });
    }
    this.placed.set(name, out);
    return out;
  }

  /** Adds a node; its outputs are named after `hint` unless `outputs` names them. */
  node(opType: string, inputs: string[], attrs?: Attrs, opts: NodeOpts = {}): string[] {
    const outs =
      opts.outputs ??
      Array.from(
        { length: opts.count ?? 1 },
        (_, i) => `${opts.hint ?? opType}_${this.counter}_${i}`,
      );
    this.counter++;
    this.nodes.push({
      opType,
      inputs,
      outputs: outs,
      name: `${opType}_${this.counter}`,
      ...(opts.domain ? { domain: opts.domain } : {}),
      ...(attrs ? { attributes: attrs } : {}),
    });
    return outs;
  }

  op(opType: string, inputs: string[], attrs?: Attrs, opts: NodeOpts = {}): string {
    return this.node(opType, inputs, attrs, opts)[0] as string;
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

  /**
   * x @ W^T (+ b) for an HF [out, in] weight and an optional [out] bias: FusedMatMul reads W as
   * stored (no transpose copy).
   */
  linear(x: string, weight: string, bias?: string): string {
    const y = this.op(
      'FusedMatMul',
      [x, this.weight(weight)],
      { transB: int(1), alpha: float(1) },
      {
        domain: MS,
        hint: 'linear',
      },
    );
    return bias ? this.op('Add', [y, this.weight(bias)], undefined, { hint: 'bias' }) : y;
  }

  /** RMSNorm over the last axis: x / sqrt(mean(x²) + eps) · w. */
  rmsNorm(x: string, weight: string): string {
    return this.op(
      'SimplifiedLayerNormalization',
      [x, this.weight(weight)],
      { axis: int(-1), epsilon: float(this.config.rmsNormEps) },
      { hint: 'rmsnorm' },
    );
  }

  /** RMSNorm of x + residual, fused: returns [normed, x + residual]. */
  addRmsNorm(x: string, residual: string, weight: string): [string, string] {
    const outs = this.node(
      'SkipSimplifiedLayerNormalization',
      [x, residual, this.weight(weight)],
      { epsilon: float(this.config.rmsNormEps) },
      { domain: MS, outputs: [`rmsnorm_${this.counter}`, '', '', `resid_${this.counter}`] },
    );
    return [outs[0] as string, outs[3] as string];
  }

  /** Qwen3's per-head RMSNorm of q or k: [B, S, heads·hd] through [B, S, heads, hd]. */
  headNorm(x: string, heads: number, weight: string): string {
    const c = this.config;
    const split = this.op('Reshape', [x, this.ints([0, 0, heads, c.headDim])]);
    return this.op('Reshape', [this.rmsNorm(split, weight), this.ints([0, 0, heads * c.headDim])]);
  }

  /** HF rotate-half RoPE on [B, S, heads·hd] at position_ids. */
  rope(x: string, heads: number): string {
    return this.op(
      'RotaryEmbedding',
      [x, 'position_ids', 'rope_cos', 'rope_sin'],
      { interleaved: int(0), num_heads: int(heads) },
      { domain: MS, hint: 'rope' },
    );
  }
}

interface NodeOpts {
  domain?: string;
  hint?: string;
  count?: number;
  /** Explicit output names ('' leaves an optional output out). */
  outputs?: string[];
}

export interface ExportOptions {
  graphName?: string;
  /**
   * 'initializers' (default): weights are baked into the model; a new snapshot needs a new
   * session. 'inputs': weights are graph inputs fed on every run in their HF layout, so a new
   * snapshot is swapped in without touching the session.
   */
  weightsAs?: 'initializers' | 'inputs';
}

/** Every weight the config needs, present with its shape (and raw bytes of the right size). */
export function checkWeights(c: ModelConfig, weights: ReadonlyMap<string, DecoderWeight>): void {
  for (const name of expectedWeightNames(c)) {
    const t = weights.get(name);
    if (!t) throw new OnnxExportError(`missing weight ${name}`);
    const want = expectedWeightShape(c, name);
    if (t.shape.join(',') !== want.join(','))
      throw new OnnxExportError(`${name}: shape [${t.shape}] but the config needs [${want}]`);
    const n = want.reduce((a, b) => a * b, 1);
    const { dtype, bytes } = weightBytes(t);
    if (bytes.length !== n * DTYPE_WIDTH[dtype] || !(dtype in ONNX_DTYPE))
      throw new OnnxExportError(`${name}: ${bytes.length} bytes of ${dtype} for ${n} values`);
  }
}

function checkConfig(c: ModelConfig): void {
  // GroupQueryAttention and RotaryEmbedding's CPU kernels need these
  if (c.headDim % 8 !== 0)
    throw new OnnxExportError(`head_dim ${c.headDim} is not a multiple of 8 (GroupQueryAttention)`);
  if (c.numHeads % c.numKvHeads !== 0)
    throw new OnnxExportError(
      `num_attention_heads ${c.numHeads} is not a multiple of num_key_value_heads ${c.numKvHeads}`,
    );
}

/** The graph's inputs other than weights. */
function runtimeInputs(c: ModelConfig): OnnxValueInfo[] {
  const inputs: OnnxValueInfo[] = [
    { name: 'input_ids', elemType: TensorDataType.INT64, shape: ['batch', 'seq'] },
    { name: 'position_ids', elemType: TensorDataType.INT64, shape: ['batch', 'seq'] },
    { name: 'seqlens_k', elemType: TensorDataType.INT32, shape: ['batch'] },
    { name: 'total_sequence_length', elemType: TensorDataType.INT32, shape: [] },
  ];
  for (let l = 0; l < c.numLayers; l++)
    for (const kv of ['key', 'value'])
      inputs.push({
        name: `past_key_values.${l}.${kv}`,
        elemType: TensorDataType.FLOAT,
        shape: ['batch', c.numKvHeads, 'capacity', c.headDim],
      });
  return inputs;
}

/** One decoder layer; returns the residual stream and the layer's new K and V rows. */
function decoderLayer(
  g: GraphBuilder,
  c: ModelConfig,
  l: number,
  h: string,
  x: string,
): { x: string; k: string; v: string; mlp: string } {
  const p = `model.layers.${l}`;
  const qkvBias = (m: string) => (c.qkvBias ? `${p}.self_attn.${m}.bias` : undefined);
  let q = g.linear(h, `${p}.self_attn.q_proj.weight`, qkvBias('q_proj'));
  let k = g.linear(h, `${p}.self_attn.k_proj.weight`, qkvBias('k_proj'));
  const v = g.linear(h, `${p}.self_attn.v_proj.weight`, qkvBias('v_proj'));
  if (c.qkNorm) {
    q = g.headNorm(q, c.numHeads, `${p}.self_attn.q_norm.weight`);
    k = g.headNorm(k, c.numKvHeads, `${p}.self_attn.k_norm.weight`);
  }
  q = g.rope(q, c.numHeads);
  k = g.rope(k, c.numKvHeads);
  const [attn] = g.node(
    'GroupQueryAttention',
    [
      q,
      k,
      v,
      `past_key_values.${l}.key`,
      `past_key_values.${l}.value`,
      'seqlens_k',
      'total_sequence_length',
    ],
    {
      num_heads: int(c.numHeads),
      kv_num_heads: int(c.numKvHeads),
      scale: float(1 / Math.sqrt(c.headDim)),
    },
    { domain: MS, outputs: [`attn_${l}`, `present_${l}_key`, `present_${l}_value`] },
  );
  const o = g.linear(
    attn as string,
    `${p}.self_attn.o_proj.weight`,
    c.oProjBias ? `${p}.self_attn.o_proj.bias` : undefined,
  );
  const [h2, x2] = g.addRmsNorm(o, x, `${p}.post_attention_layernorm.weight`);
  const gate = g.linear(h2, `${p}.mlp.gate_proj.weight`);
  const up = g.linear(h2, `${p}.mlp.up_proj.weight`);
  const silu = g.op('QuickGelu', [gate], { alpha: float(1) }, { domain: MS });
  const mlp = g.linear(
    g.op('Mul', [silu, up], undefined, { hint: 'swiglu' }),
    `${p}.mlp.down_proj.weight`,
  );
  return { x: x2, k, v, mlp };
}

/**
 * Builds the ONNX model bytes for `config`: with `weights` (HF names and layout) as
 * initializers inside the model, or (weightsAs 'inputs', weights null) a graph whose weights
 * are inputs. A standalone model, e.g. to save as a .onnx file.
 */
export function exportOnnxModel(
  c: ModelConfig,
  weights: ReadonlyMap<string, DecoderWeight> | null,
  opts: ExportOptions = {},
): Uint8Array {
  if (opts.weightsAs === 'inputs') return buildGraph(c, { kind: 'inputs' }, opts);
  if (!weights) throw new OnnxExportError('weights are required unless weightsAs is "inputs"');
  checkWeights(c, weights);
  return buildGraph(c, { kind: 'inline', weights }, opts);
}

/**
 * The model with its weights as external initializers: `externalData` (views of the weights'
 * own bytes, no copy) goes to InferenceSession.create beside the model bytes.
 */
export function exportOnnxGraph(
  c: ModelConfig,
  weights: ReadonlyMap<string, DecoderWeight>,
  opts: Pick<ExportOptions, 'graphName'> = {},
): { model: Uint8Array; externalData: ExternalData[] } {
  checkWeights(c, weights);
  const data: ExternalData[] = [];
  const model = buildGraph(c, { kind: 'external', weights, data }, opts);
  return { model, externalData: data };
}

function buildGraph(c: ModelConfig, placement: Placement, opts: ExportOptions): Uint8Array {
  const g = new GraphBuilder(c, placement);
  checkConfig(c);
  const { cos, sin } = ropeTables(c);
  g.initializers.push(floatTensor('rope_cos', cos, [c.maxPositions, c.headDim / 2]));
  g.initializers.push(floatTensor('rope_sin', sin, [c.maxPositions, c.headDim / 2]));

  const embed = g.op('Gather', [g.weight('model.embed_tokens.weight'), 'input_ids'], {
    axis: int(0),
  });
  let x = embed;
  let h = g.rmsNorm(embed, 'model.layers.0.input_layernorm.weight');
  const newKv: string[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const out = decoderLayer(g, c, l, h, x);
    newKv.push(out.k, out.v);
    const norm =
      l + 1 < c.numLayers ? `model.layers.${l + 1}.input_layernorm.weight` : 'model.norm.weight';
    [h, x] = g.addRmsNorm(out.mlp, out.x, norm);
  }
  const head = c.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  g.node('LogSoftmax', [g.linear(h, head)], { axis: int(-1) }, { outputs: ['logprobs'] });
  g.node('Concat', newKv, { axis: int(-1) }, { outputs: ['new_kv'] });

  const inputs = runtimeInputs(c);
  for (const [name, dims] of g.weightInputs)
    inputs.push({ name, elemType: TensorDataType.FLOAT, shape: dims });
  const kvWidth = 2 * c.numLayers * c.numKvHeads * c.headDim;
  return encodeModel({
    irVersion: IR_VERSION,
    opsetVersion: OPSET_VERSION,
    producerName: 'temper',
    domainOpsets: [{ domain: MS, version: 1 }],
    graph: {
      name: opts.graphName ?? 'temper_decoder',
      nodes: g.nodes,
      initializers: g.initializers,
      inputs,
      outputs: [
        { name: 'logprobs', elemType: TensorDataType.FLOAT, shape: ['batch', 'seq', c.vocabSize] },
        { name: 'new_kv', elemType: TensorDataType.FLOAT, shape: ['batch', 'seq', kvWidth] },
      ],
    },
  });
}
