// The engine's TypeScript face: a transformer with HuggingFace tensor names that computes
// per-token log-probabilities, backpropagates any d(loss)/d(logprob), steps AdamW and samples.

import { open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { parseSafetensorsHeader, type TensorMap } from '../checkpoints/safetensors.js';
import { adamWSchema } from '../recipes/optimizer.js';
import { type ModelConfig, readHfConfig, ropeInverseFrequencies } from './config.js';
import { DTYPE_BYTES, f16ToF32, type TensorData } from './dtype.js';
import {
  type NativeAdamParams,
  type NativeModel,
  type NativeSampleOutput,
  type NativeSampleParams,
  type NativeTensorInfo,
  nativeEngine,
  type Pooling,
} from './native.js';
import { type EngineOptions, engineOptionsSchema } from './options.js';
import { listWeightFiles } from './weights-files.js';

export const LORA_TARGETS = [
  'q_proj',
  'k_proj',
  'v_proj',
  'o_proj',
  'gate_proj',
  'up_proj',
  'down_proj',
  'lm_head',
] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];
export const DEFAULT_LORA_TARGETS: LoraTarget[] = [
  'q_proj',
  'k_proj',
  'v_proj',
  'o_proj',
  'gate_proj',
  'up_proj',
  'down_proj',
];

export const loraOptionsSchema = z.object({
  rank: z.number().int().positive().max(1024),
  alpha: z.number().positive(),
  targets: z.array(z.enum(LORA_TARGETS)).nonempty().default(DEFAULT_LORA_TARGETS),
  seed: z.number().int().nonnegative().default(0),
});
export type LoraOptions = z.input<typeof loraOptionsSchema>;

// The engine settings are a leaf module of their own: job settings (src/recipes/fields.ts)
// take their schema without loading the engine.
export { type EngineOptions, engineOptionsSchema } from './options.js';

export interface ModelOptions extends EngineOptions {
  /** Worker threads (default: the machine's core count). Results do not depend on it. */
  threads?: number;
  /** Train a LoRA adapter instead of all parameters. */
  lora?: LoraOptions;
}

/** One training/scoring sequence: tokens[i] is the input at position i, targets[i] the token whose logprob is returned there. */
export interface Sequence {
  tokens: ArrayLike<number>;
  targets: ArrayLike<number>;
}

/** A sequence of input tokens (for embeddings). */
export interface TokenSequence {
  tokens: ArrayLike<number>;
}

/** AdamW (src/recipes/optimizer.ts, its one definition) plus the engine's gradient scale. */
export const adamParamsSchema = adamWSchema.extend({
  /** Multiplies the accumulated gradients first (grad-accumulation normalisation); 1 = none. */
  gradScale: z.number().positive().finite().default(1),
});
export type AdamParams = z.input<typeof adamParamsSchema>;

export const sampleParamsSchema = z.object({
  n: z.number().int().min(1).max(4096).default(1),
  maxTokens: z.number().int().min(1).default(16),
  temperature: z.number().min(0).finite().default(1),
  topK: z.number().int().min(0).default(0),
  topP: z.number().gt(0).max(1).default(1),
  seed: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).default(0),
  stopTokens: z.array(z.number().int().nonnegative()).default([]),
  promptLogprobs: z.boolean().default(false),
});
export type SampleParams = z.input<typeof sampleParamsSchema>;

export interface SampledSequence {
  tokens: number[];
  /** Log-probability of each sampled token under the model (temperature 1, unfiltered). */
  logprobs: number[];
  finishReason: 'stop' | 'length';
}

export interface SampleOutput {
  samples: SampledSequence[];
  /** logprob of prompt[i] given prompt[..i]; null for i = 0. Present when requested. */
  promptLogprobs?: (number | null)[];
}

export class EngineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EngineError';
  }
}

function formatZod(where: string, err: z.ZodError): string {
  return `${where}: ${err.issues.map((i) => `${i.path.join('.') || '(value)'}: ${i.message}`).join('; ')}`;
}

export class TransformerModel {
  readonly config: ModelConfig;
  readonly lora: z.output<typeof loraOptionsSchema> | null;
  readonly engineOptions: z.output<typeof engineOptionsSchema>;
  private readonly native: NativeModel;
  private readonly info: Map<string, NativeTensorInfo>;
  private savedRows = -1;

  constructor(config: ModelConfig, options: ModelOptions = {}) {
    this.config = config;
    const lora = options.lora ? loraOptionsSchema.safeParse(options.lora) : null;
    if (lora && !lora.success) throw new EngineError(formatZod('lora options', lora.error));
    this.lora = lora ? lora.data : null;
    const engine = engineOptionsSchema.safeParse({
      baseDtype: options.baseDtype,
      recompute: options.recompute,
    });
    if (!engine.success) throw new EngineError(formatZod('engine options', engine.error));
    if (engine.data.baseDtype === 'bfloat16' && !this.lora)
      throw new EngineError(
        "engine options: baseDtype 'bfloat16' needs a LoRA adapter (full-parameter training updates the base in float32)",
      );
    this.engineOptions = engine.data;
    const threads = options.threads ?? availableParallelism();
    this.native = callNative(
      () =>
        new (nativeEngine().EngineModel)(
          { ...config, ropeInvFreq: ropeInverseFrequencies(config) },
          {
            threads,
            lora: this.lora,
            baseBf16: engine.data.baseDtype === 'bfloat16',
            recompute: engine.data.recompute,
          },
        ),
    );
    this.info = new Map(this.native.tensorInfo().map((t) => [t.name, t]));
  }

  /** Loads `config.json` and every `*.safetensors` weight file of an HF-layout directory. */
  static async fromDirectory(dir: string, options: ModelOptions = {}): Promise<TransformerModel> {
    const config = await readHfConfig(join(dir, 'config.json'));
    const model = new TransformerModel(config, options);
    for (const file of await listWeightFiles(dir)) await model.loadSafetensorsFile(file);
    model.assertBaseLoaded();
    return model;
  }

  /**
   * Loads the tensors of one safetensors file lazily: only the header is parsed in JS; F32 and
   * BF16 tensors are read by the engine straight from the file into its own storage (no copy
   * of the weights in JS), F16/F64 ones tensor by tensor through JS. Every name and shape is
   * checked before anything is written. A failure part-way (a non-finite value, a short read)
   * leaves this model unusable: callers building a model from files discard it.
   */
  async loadSafetensorsFile(file: string): Promise<void> {
    const fh = await open(file, 'r');
    try {
      const size = (await fh.stat()).size;
      const prefix = Buffer.alloc(8);
      await fh.read(prefix, 0, 8, 0);
      if (size < 8) throw new EngineError(`${file}: file is shorter than the 8-byte header length`);
      const headerLen = Number(prefix.readBigUInt64LE(0));
      if (headerLen > size - 8)
        throw new EngineError(`${file}: header length ${headerLen} exceeds the file size`);
      const json = Buffer.alloc(headerLen);
      await fh.read(json, 0, headerLen, 8);
      const header = parseSafetensorsHeader(json, file, size - 8 - headerLen);
      for (const e of header.entries) this.checkTensorShape(e.name, e.shape, file);
      for (const e of header.entries) {
        const at = header.dataStart + e.begin;
        if (e.dtype === 'F32' || e.dtype === 'BF16') {
          callNative(() => this.native.loadTensorFile(e.name, file, at, e.dtype as 'F32' | 'BF16'));
          continue;
        }
        const bytes = Buffer.alloc(e.end - e.begin);
        await fh.read(bytes, 0, bytes.length, at);
        const n = bytes.length / DTYPE_BYTES[e.dtype];
        const aligned = new Uint8Array(bytes).buffer;
        const data =
          e.dtype === 'F16'
            ? f16ToF32(new Uint16Array(aligned, 0, n))
            : Float32Array.from(new Float64Array(aligned, 0, n));
        this.loadTensors(new Map([[e.name, { shape: e.shape, data }]]), {
          source: file,
          partial: true,
        });
      }
      this.loaded = new Set([...this.loaded, ...header.entries.map((e) => e.name)]);
    } finally {
      await fh.close();
    }
  }

  private checkTensorShape(name: string, shape: readonly number[], source: string): void {
    const info = this.info.get(name);
    if (!info)
      throw new EngineError(`${source}: unexpected tensor '${name}' for this model configuration`);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i]))
      throw new EngineError(
        `${source}: tensor '${name}' has shape [${shape}], expected [${info.shape}]`,
      );
  }

  /** How the engine stores a tensor ('BF16' for a frozen base kept in bf16). */
  tensorDtype(name: string): 'F32' | 'BF16' {
    return callNative(() => this.native.tensorDtype(name));
  }

  static simd(): string {
    return nativeEngine().simd;
  }

  get threads(): number {
    return this.native.threads();
  }

  set threads(n: number) {
    callNative(() => this.native.setThreads(n));
  }

  /** Optimizer steps taken so far. */
  get step(): number {
    return this.native.step();
  }

  set step(n: number) {
    this.native.setStep(n);
  }

  tensorInfo(): NativeTensorInfo[] {
    return [...this.info.values()];
  }

  trainableNames(): string[] {
    return this.tensorInfo()
      .filter((t) => t.trainable)
      .map((t) => t.name);
  }

  /**
   * Sets tensors by HF name. Unknown names and wrong shapes are errors, checked for every
   * tensor before any is written so a bad file changes nothing. With `partial: false`
   * (default) every base weight must be present.
   */
  loadTensors(tensors: TensorMap, opts: { source?: string; partial?: boolean } = {}): void {
    const source = opts.source ?? 'weights';
    for (const [name, t] of tensors) {
      this.checkTensorShape(name, t.shape, source);
      for (let i = 0; i < t.data.length; i++)
        if (!Number.isFinite(t.data[i]))
          throw new EngineError(
            `${source}: tensor '${name}' has a non-finite value at flat index ${i}`,
          );
    }
    if (!opts.partial) {
      const missing = this.baseNames().filter((n) => !tensors.has(n));
      if (missing.length > 0)
        throw new EngineError(
          `${source}: missing tensors ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`,
        );
    }
    for (const [name, t] of tensors) this.native.setTensor(name, t.data);
    this.loaded = new Set([...this.loaded, ...tensors.keys()]);
  }

  private loaded = new Set<string>();

  private baseNames(): string[] {
    return this.tensorInfo()
      .map((t) => t.name)
      .filter((n) => !n.includes('.lora_'));
  }

  private assertBaseLoaded(): void {
    const missing = this.baseNames().filter((n) => !this.loaded.has(n));
    if (missing.length > 0)
      throw new EngineError(
        `model directory is missing tensors: ${missing.slice(0, 5).join(', ')}`,
      );
  }

  getTensor(name: string): Float32Array {
    return callNative(() => this.native.getTensor(name));
  }

  /** All tensors (base and adapter) by HF name. */
  namedTensors(filter: (name: string) => boolean = () => true): TensorMap {
    const out: TensorMap = new Map();
    for (const t of this.tensorInfo())
      if (filter(t.name)) out.set(t.name, { shape: t.shape, data: this.getTensor(t.name) });
    return out;
  }

  /**
   * The engine's own memory of a tensor (its values, AdamW moments `m`/`v`, or `grad`), without
   * a copy: for streaming checkpoints and exports. Treat it as read-only; it changes in place
   * with every optimizer step, so copy it for a snapshot. null for a frozen tensor's m/v/grad.
   * The values of a tensor the engine stores in bf16 (a frozen LoRA base, `baseDtype`) come as
   * a Uint16Array of bfloat16 bits (see `TensorData`): a float32 view of them does not exist.
   */
  tensorView(name: string, kind?: 'value'): TensorData;
  tensorView(name: string, kind: 'm' | 'v' | 'grad'): Float32Array | null;
  tensorView(name: string, kind: 'value' | 'm' | 'v' | 'grad' = 'value'): TensorData | null {
    const view = callNative(() => this.native.tensorView(name, kind));
    if (kind === 'value' && view === null)
      throw new EngineError(`tensor '${name}' has no value storage`);
    return view;
  }

  getGrad(name: string): Float32Array | null {
    return callNative(() => this.native.getGrad(name));
  }

  getOptimizerState(name: string): { m: Float32Array; v: Float32Array } | null {
    return callNative(() => this.native.getOptimizerState(name));
  }

  setOptimizerState(name: string, m: Float32Array, v: Float32Array): void {
    callNative(() => this.native.setOptimizerState(name, m, v));
  }

  /**
   * Frees the engine's AdamW moments: a ZeRO-1 data-parallel rank keeps only its shard of
   * them (src/trainer/data-parallel.ts). getOptimizerState gives empty arrays until
   * setOptimizerState restores them, and an unsharded optimStep refuses to run until every
   * trainable tensor's moments are restored (starting from zeros would lose the state).
   */
  releaseOptimizerState(): void {
    callNative(() => this.native.releaseOptimizerState());
  }

  // Each operation comes in two forms: a synchronous one, and an *Async one that runs the
  // native work on a worker thread (the event loop stays free; the model is busy meanwhile).
  // Both share the validation and conversion below, so they behave identically.

  /** Per-target-token log-probabilities, sequences concatenated in order. */
  forward(sequences: Sequence[], opts: { saveForBackward?: boolean } = {}): Float32Array {
    const { tokens, targets, seqLens } = this.pack(sequences);
    const save = opts.saveForBackward ?? false;
    const out = callNative(() => this.native.forward(tokens, targets, seqLens, save));
    this.savedRows = save ? tokens.length : -1;
    this.savedHidden = -1;
    return out;
  }

  async forwardAsync(
    sequences: Sequence[],
    opts: { saveForBackward?: boolean } = {},
  ): Promise<Float32Array> {
    const { tokens, targets, seqLens } = this.pack(sequences);
    const save = opts.saveForBackward ?? false;
    this.savedRows = -1;
    const out = await callNativeAsync(() =>
      this.native.forwardAsync(tokens, targets, seqLens, save),
    );
    this.savedRows = save ? tokens.length : -1;
    this.savedHidden = -1;
    return out;
  }

  /** Accumulates gradients of Σ dlogprob[i]·logprob[i] for the last forward({saveForBackward}). */
  backward(dlogprob: Float32Array | ArrayLike<number>): void {
    const d = this.checkDlogprob(dlogprob);
    callNative(() => this.native.backward(d));
  }

  async backwardAsync(dlogprob: Float32Array | ArrayLike<number>): Promise<void> {
    const d = this.checkDlogprob(dlogprob);
    await callNativeAsync(() => this.native.backwardAsync(d));
  }

  /**
   * Fused weighted cross-entropy: loss = −Σ w_i·logprob_i (any real weights, negatives
   * included); gradients accumulate. Returns the loss and the logprobs.
   */
  forwardBackwardCrossEntropy(
    sequences: Sequence[],
    weights: ArrayLike<number>,
  ): { loss: number; logprobs: Float32Array } {
    checkWeights(weights, sequences);
    const logprobs = this.forward(sequences, { saveForBackward: true });
    const { d, loss } = crossEntropyGrad(weights, logprobs);
    this.backward(d);
    return { loss, logprobs };
  }

  async forwardBackwardCrossEntropyAsync(
    sequences: Sequence[],
    weights: ArrayLike<number>,
  ): Promise<{ loss: number; logprobs: Float32Array }> {
    checkWeights(weights, sequences);
    const logprobs = await this.forwardAsync(sequences, { saveForBackward: true });
    const { d, loss } = crossEntropyGrad(weights, logprobs);
    await this.backwardAsync(d);
    return { loss, logprobs };
  }

  zeroGrad(): void {
    this.native.zeroGrad();
  }

  gradNorm(): number {
    return this.native.gradNorm();
  }

  /** One decoupled AdamW step on the accumulated gradients, which are then cleared. Returns the pre-clip global grad norm. */
  optimStep(params: AdamParams): { gradNorm: number; step: number } {
    const p = parseAdam(params);
    const gradNorm = callNative(() => this.native.adamwStep(p));
    return { gradNorm, step: this.step };
  }

  async optimStepAsync(params: AdamParams): Promise<{ gradNorm: number; step: number }> {
    const p = parseAdam(params);
    const gradNorm = await callNativeAsync(() => this.native.adamwStepAsync(p));
    return { gradNorm, step: this.step };
  }

  setAdapterEnabled(on: boolean): void {
    if (!this.lora && !on) throw new EngineError('this model has no LoRA adapter to disable');
    this.native.setAdapterEnabled(on);
  }

  sample(prompt: ArrayLike<number>, params: SampleParams = {}): SampleOutput {
    const p = parseSampleParams(params);
    this.savedRows = -1;
    this.savedHidden = -1;
    return fromNativeSamples(callNative(() => this.native.sample(toInt32(prompt, 'prompt'), p)));
  }

  async sampleAsync(prompt: ArrayLike<number>, params: SampleParams = {}): Promise<SampleOutput> {
    const p = parseSampleParams(params);
    this.savedRows = -1;
    this.savedHidden = -1;
    return fromNativeSamples(
      await callNativeAsync(() => this.native.sampleAsync(toInt32(prompt, 'prompt'), p)),
    );
  }

  /**
   * Embeddings: the final normed hidden states pooled per sequence (`mean` over its tokens or
   * its `last` token), as [sequences × hidden] row-major. `targets` are not needed.
   */
  forwardHidden(
    sequences: TokenSequence[],
    opts: { pooling?: Pooling; saveForBackward?: boolean } = {},
  ): Float32Array {
    const { tokens, seqLens } = this.packTokens(sequences);
    const save = opts.saveForBackward ?? false;
    const out = callNative(() =>
      this.native.forwardHidden(tokens, seqLens, opts.pooling ?? 'mean', save),
    );
    this.savedHidden = save ? seqLens.length * this.config.hiddenSize : -1;
    this.savedRows = -1;
    return out;
  }

  async forwardHiddenAsync(
    sequences: TokenSequence[],
    opts: { pooling?: Pooling; saveForBackward?: boolean } = {},
  ): Promise<Float32Array> {
    const { tokens, seqLens } = this.packTokens(sequences);
    const save = opts.saveForBackward ?? false;
    this.savedHidden = -1;
    this.savedRows = -1;
    const out = await callNativeAsync(() =>
      this.native.forwardHiddenAsync(tokens, seqLens, opts.pooling ?? 'mean', save),
    );
    this.savedHidden = save ? seqLens.length * this.config.hiddenSize : -1;
    return out;
  }

  /** Accumulates gradients of Σ dpooled·pooled for the last forwardHidden({saveForBackward}). */
  backwardHidden(dpooled: Float32Array | ArrayLike<number>): void {
    const d = this.checkDpooled(dpooled);
    callNative(() => this.native.backwardHidden(d));
  }

  async backwardHiddenAsync(dpooled: Float32Array | ArrayLike<number>): Promise<void> {
    const d = this.checkDpooled(dpooled);
    await callNativeAsync(() => this.native.backwardHiddenAsync(d));
  }

  private checkDpooled(dpooled: Float32Array | ArrayLike<number>): Float32Array {
    if (this.savedHidden < 0)
      throw new EngineError(
        'backwardHidden() needs a preceding forwardHidden(..., {saveForBackward: true})',
      );
    if (dpooled.length !== this.savedHidden)
      throw new EngineError(
        `backwardHidden(): got ${dpooled.length} gradients for ${this.savedHidden} pooled hidden values`,
      );
    return dpooled instanceof Float32Array ? dpooled : Float32Array.from(dpooled);
  }

  private savedHidden = -1;

  private packTokens(sequences: TokenSequence[]): { tokens: Int32Array; seqLens: Int32Array } {
    const { tokens, seqLens } = this.pack(
      sequences.map((s) => ({ tokens: s.tokens, targets: s.tokens })),
    );
    return { tokens, seqLens };
  }

  private checkDlogprob(dlogprob: Float32Array | ArrayLike<number>): Float32Array {
    if (this.savedRows < 0)
      throw new EngineError('backward() needs a preceding forward(..., {saveForBackward: true})');
    if (dlogprob.length !== this.savedRows)
      throw new EngineError(
        `backward(): got ${dlogprob.length} gradients for ${this.savedRows} target tokens`,
      );
    return dlogprob instanceof Float32Array ? dlogprob : Float32Array.from(dlogprob);
  }

  private pack(sequences: Sequence[]): {
    tokens: Int32Array;
    targets: Int32Array;
    seqLens: Int32Array;
  } {
    if (sequences.length === 0) throw new EngineError('batch is empty');
    let total = 0;
    sequences.forEach((s, i) => {
      if (s.tokens.length !== s.targets.length)
        throw new EngineError(
          `sequence ${i}: ${s.tokens.length} tokens but ${s.targets.length} targets`,
        );
      if (s.tokens.length === 0) throw new EngineError(`sequence ${i} is empty`);
      total += s.tokens.length;
    });
    const tokens = new Int32Array(total);
    const targets = new Int32Array(total);
    const seqLens = new Int32Array(sequences.length);
    let off = 0;
    sequences.forEach((s, i) => {
      for (let j = 0; j < s.tokens.length; j++) {
        tokens[off + j] = checkId(s.tokens[j]!, this.config.vocabSize, `sequence ${i} token ${j}`);
        targets[off + j] = checkId(
          s.targets[j]!,
          this.config.vocabSize,
          `sequence ${i} target ${j}`,
        );
      }
      seqLens[i] = s.tokens.length;
      off += s.tokens.length;
    });
    return { tokens, targets, seqLens };
  }
}

function checkWeights(weights: ArrayLike<number>, sequences: Sequence[]): void {
  const n = sequences.reduce((a, q) => a + q.targets.length, 0);
  if (weights.length !== n)
    throw new EngineError(`cross-entropy: got ${weights.length} weights for ${n} target tokens`);
  for (let i = 0; i < weights.length; i++)
    if (!Number.isFinite(weights[i]))
      throw new EngineError(`cross-entropy: weight at position ${i} is not finite`);
}

/** d(loss)/d(logprob) = −w and the loss −Σ w·logprob. */
function crossEntropyGrad(
  weights: ArrayLike<number>,
  logprobs: Float32Array,
): { d: Float32Array; loss: number } {
  const d = new Float32Array(weights.length);
  let loss = 0;
  for (let i = 0; i < d.length; i++) {
    d[i] = -weights[i]!;
    loss -= weights[i]! * logprobs[i]!;
  }
  return { d, loss };
}

function parseAdam(params: AdamParams): NativeAdamParams {
  const p = adamParamsSchema.safeParse(params);
  if (!p.success) throw new EngineError(formatZod('adam params', p.error));
  return p.data;
}

function parseSampleParams(params: SampleParams): NativeSampleParams {
  const p = sampleParamsSchema.safeParse(params);
  if (!p.success) throw new EngineError(formatZod('sampling params', p.error));
  const { stopTokens, ...rest } = p.data;
  return { ...rest, stopTokens: Int32Array.from(stopTokens) };
}

function fromNativeSamples(out: NativeSampleOutput): SampleOutput {
  const samples = out.samples.map((s) => ({
    tokens: Array.from(s.tokens),
    logprobs: Array.from(s.logprobs),
    finishReason: s.finishReason,
  }));
  if (!out.promptLogprobs) return { samples };
  return {
    samples,
    promptLogprobs: Array.from(out.promptLogprobs, (x, i) => (i === 0 ? null : x)),
  };
}

function checkId(id: number, vocab: number, where: string): number {
  if (!Number.isInteger(id) || id < 0 || id >= vocab)
    throw new EngineError(`${where}: token id ${id} is outside the vocabulary [0, ${vocab})`);
  return id;
}

function toInt32(xs: ArrayLike<number>, what: string): Int32Array {
  const out = new Int32Array(xs.length);
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i]!;
    if (!Number.isInteger(x)) throw new EngineError(`${what}[${i}] is not an integer token id`);
    out[i] = x;
  }
  return out;
}

/** Awaits a native promise, re-raising its errors as EngineError. */
async function callNativeAsync<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof EngineError) throw err;
    throw new EngineError((err as Error).message);
  }
}

/** Runs a native call, re-raising its errors as EngineError. */
function callNative<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof EngineError) throw err;
    throw new EngineError((err as Error).message);
  }
}
