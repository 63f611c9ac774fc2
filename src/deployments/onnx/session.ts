// An onnxruntime-node (CPU) session over the exported decoder, with a KV cache per sequence.
import * as ort from 'onnxruntime-node';
import type { ModelConfig } from '../../engine/config.js';
import { exportOnnxModel, type WeightTensor } from './export.js';

/** The KV cache of one sequence (batch 1): per layer [kvHeads, len, headDim]. */
export interface KvCache {
  len: number;
  keys: ort.Tensor[];
  values: ort.Tensor[];
}

export interface StepResult {
  /** log-softmax rows, one per input token: [tokens.length * vocab]. */
  logprobs: Float32Array;
  cache: KvCache;
}

export interface OnnxDecoderOptions {
  /** intra-op threads (default 1: replicas are processes, parallelism comes from them). */
  threads?: number;
}

export class OnnxDecoder {
  readonly config: ModelConfig;
  private readonly session: ort.InferenceSession;
  /** Milliseconds spent encoding the graph and opening the session. */
  readonly buildMs: { encode: number; session: number };

  private constructor(
    config: ModelConfig,
    session: ort.InferenceSession,
    buildMs: { encode: number; session: number },
  ) {
    this.config = config;
    this.session = session;
    this.buildMs = buildMs;
  }

  static async create(
    config: ModelConfig,
    weights: ReadonlyMap<string, WeightTensor>,
    opts: OnnxDecoderOptions = {},
  ): Promise<OnnxDecoder> {
    const t0 = performance.now();
    const bytes = exportOnnxModel(config, weights);
    const t1 = performance.now();
    const session = await ort.InferenceSession.create(bytes, {
      graphOptimizationLevel: 'all',
      intraOpNumThreads: opts.threads ?? 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
    });
    const t2 = performance.now();
    return new OnnxDecoder(config, session, { encode: t1 - t0, session: t2 - t1 });
  }

  emptyCache(): KvCache {
    const c = this.config;
    const empty = (): ort.Tensor =>
      new ort.Tensor('float32', new Float32Array(0), [1, c.numKvHeads, 0, c.headDim]);
    return {
      len: 0,
      keys: Array.from({ length: c.numLayers }, empty),
      values: Array.from({ length: c.numLayers }, empty),
    };
  }

  /** Runs `tokens` at positions cache.len.. and returns their log-prob rows and the grown cache. */
  async step(tokens: readonly number[], cache: KvCache = this.emptyCache()): Promise<StepResult> {
    const c = this.config;
    const S = tokens.length;
    const past = cache.len;
    const total = past + S;
    if (S === 0) throw new Error('step: no tokens');
    if (total > c.maxPositions)
      throw new Error(
        `sequence of ${total} tokens exceeds max_position_embeddings ${c.maxPositions}`,
      );
    const ids = BigInt64Array.from(tokens, (t) => BigInt(t));
    const pos = new BigInt64Array(S);
    for (let i = 0; i < S; i++) pos[i] = BigInt(past + i);
    const bias = new Float32Array(S * total);
    for (let i = 0; i < S; i++)
      for (let j = past + i + 1; j < total; j++) bias[i * total + j] = Number.NEGATIVE_INFINITY;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [1, S]),
      position_ids: new ort.Tensor('int64', pos, [1, S]),
      attention_bias: new ort.Tensor('float32', bias, [1, 1, S, total]),
    };
    for (let l = 0; l < c.numLayers; l++) {
      feeds[`past_key_values.${l}.key`] = cache.keys[l] as ort.Tensor;
      feeds[`past_key_values.${l}.value`] = cache.values[l] as ort.Tensor;
    }
    const out = await this.session.run(feeds);
    const next: KvCache = { len: total, keys: [], values: [] };
    for (let l = 0; l < c.numLayers; l++) {
      next.keys.push(out[`present.${l}.key`] as ort.Tensor);
      next.values.push(out[`present.${l}.value`] as ort.Tensor);
    }
    return { logprobs: (out.logprobs as ort.Tensor).data as Float32Array, cache: next };
  }

  /** Training-aligned prompt logprobs: entry i is log p(tokens[i] | tokens[..i]); null at 0. */
  async promptLogprobs(
    tokens: readonly number[],
  ): Promise<{ logprobs: (number | null)[]; result: StepResult }> {
    const V = this.config.vocabSize;
    const result = await this.step(tokens);
    const lp: (number | null)[] = [null];
    for (let i = 1; i < tokens.length; i++)
      lp.push(result.logprobs[(i - 1) * V + (tokens[i] as number)] as number);
    return { logprobs: lp, result };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
