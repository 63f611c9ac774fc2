// Loads the compiled engine (native/build/temper_engine.node) and types its surface.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelConfig } from './config.js';

export interface NativeTensorInfo {
  name: string;
  shape: number[];
  trainable: boolean;
}

export interface NativeSample {
  tokens: Int32Array;
  logprobs: Float32Array;
  finishReason: 'stop' | 'length';
}

/** How per-token hidden states become one embedding per sequence. */
export type Pooling = 'mean' | 'last';

export interface NativeAdamParams {
  learningRate: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  gradClipNorm: number;
  gradScale: number;
}

export interface NativeSampleParams {
  n: number;
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  stopTokens: Int32Array;
  promptLogprobs: boolean;
}

export interface NativeSampleOutput {
  samples: NativeSample[];
  promptLogprobs: Float32Array | null;
}

/**
 * The compiled model. The *Async methods run on a worker thread and keep the event loop
 * free; while one is pending, every other call on the same model throws "busy".
 */
export interface NativeModel {
  tensorInfo(): NativeTensorInfo[];
  setTensor(name: string, data: Float32Array): void;
  getTensor(name: string): Float32Array;
  /** Reads an F32/BF16 tensor from a file at a byte offset straight into engine memory. */
  loadTensorFile(name: string, path: string, offset: number, dtype: 'F32' | 'BF16'): void;
  /** How the engine stores a tensor: BF16 for a frozen base kept in bf16, else F32. */
  tensorDtype(name: string): 'F32' | 'BF16';
  getGrad(name: string): Float32Array | null;
  /** 'value' of a tensor stored in bf16 is a Uint16Array of bfloat16 bits. */
  tensorView(name: string, kind: 'value' | 'm' | 'v' | 'grad'): Float32Array | Uint16Array | null;
  getOptimizerState(name: string): { m: Float32Array; v: Float32Array } | null;
  setOptimizerState(name: string, m: Float32Array, v: Float32Array): void;
  releaseOptimizerState(): void;
  forward(
    tokens: Int32Array,
    targets: Int32Array,
    seqLens: Int32Array,
    save: boolean,
  ): Float32Array;
  backward(dlogprob: Float32Array): void;
  zeroGrad(): void;
  gradNorm(): number;
  adamwStep(p: NativeAdamParams): number;
  sample(prompt: Int32Array, p: NativeSampleParams): NativeSampleOutput;
  forwardAsync(
    tokens: Int32Array,
    targets: Int32Array,
    seqLens: Int32Array,
    save: boolean,
  ): Promise<Float32Array>;
  backwardAsync(dlogprob: Float32Array): Promise<void>;
  forwardHidden(
    tokens: Int32Array,
    seqLens: Int32Array,
    pooling: Pooling,
    save: boolean,
  ): Float32Array;
  backwardHidden(dpooled: Float32Array): void;
  forwardHiddenAsync(
    tokens: Int32Array,
    seqLens: Int32Array,
    pooling: Pooling,
    save: boolean,
  ): Promise<Float32Array>;
  backwardHiddenAsync(dpooled: Float32Array): Promise<void>;
  adamwStepAsync(p: NativeAdamParams): Promise<number>;
  sampleAsync(prompt: Int32Array, p: NativeSampleParams): Promise<NativeSampleOutput>;
  setAdapterEnabled(on: boolean): void;
  setThreads(n: number): void;
  threads(): number;
  step(): number;
  setStep(step: number): void;
}

export interface NativeLoraOptions {
  rank: number;
  alpha: number;
  targets: string[];
  seed: number;
}

interface NativeModule {
  EngineModel: new (
    // ropeInvFreq: the RoPE inverse frequencies (config.ts: ropeInverseFrequencies), scaling applied
    config: ModelConfig & { ropeInvFreq: Float64Array },
    options: {
      threads: number;
      lora: NativeLoraOptions | null;
      baseBf16?: boolean;
      recompute?: boolean;
    },
  ) => NativeModel;
  simd: string;
  /** The engine's operators one by one (src/engine/ops.ts types them). */
  ops: Record<string, (options: Record<string, unknown>) => unknown>;
  /** C = op(A)·op(B) with the engine's GEMM (tests and benchmarks). */
  matmul(
    m: number,
    n: number,
    k: number,
    a: Float32Array,
    b: Float32Array,
    opts?: { transA?: boolean; transB?: boolean; threads?: number; repeat?: number },
  ): Float32Array;
}

function findAddon(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'native', 'build', 'temper_engine.node');
    if (existsSync(candidate)) return candidate;
    dir = resolve(dir, '..');
  }
  throw new Error(
    'native engine not built: run `npm run build:native` (native/build/temper_engine.node is missing)',
  );
}

let cached: NativeModule | undefined;

export function nativeEngine(): NativeModule {
  if (!cached) cached = createRequire(import.meta.url)(findAddon()) as NativeModule;
  return cached;
}
