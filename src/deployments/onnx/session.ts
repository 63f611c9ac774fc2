// An onnxruntime-node (CPU) session over the exported decoder, with a KV cache per sequence.
import * as ort from 'onnxruntime-node';
import type { ModelConfig } from '../../engine/config.js';
import { exportOnnxModel, type WeightTensor, weightInputTensors } from './export.js';

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
  /**
   * 'initializers' (default): weights baked into the session (a new snapshot opens a new
   * session). 'inputs': one session for the graph, weights fed per run, so withWeights()
   * swaps a snapshot in without building a session.
   */
  weightsAs?: 'initializers' | 'inputs';
}

interface SharedSession {
  session: ort.InferenceSession;
  refs: number;
}

export class OnnxDecoder {
  readonly config: ModelConfig;
  readonly weightsAs: 'initializers' | 'inputs';
  private readonly shared: SharedSession;
  private readonly weightFeeds: Record<string, ort.Tensor>;
  private released = false;
  /** Milliseconds spent encoding the graph and opening the session (or preparing the weight feeds). */
  readonly buildMs: { encode: number; session: number };

  private constructor(
    config: ModelConfig,
    shared: SharedSession,
    weightFeeds: Record<string, ort.Tensor>,
    weightsAs: 'initializers' | 'inputs',
    buildMs: { encode: number; session: number },
  ) {
    this.config = config;
    this.shared = shared;
    this.weightFeeds = weightFeeds;
    this.weightsAs = weightsAs;
    this.buildMs = buildMs;
    shared.refs++;
  }

  private get session(): ort.InferenceSession {
    return this.shared.session;
  }

  static async create(
    config: ModelConfig,
    weights: ReadonlyMap<string, WeightTensor>,
    opts: OnnxDecoderOptions = {},
  ): Promise<OnnxDecoder> {
    const weightsAs = opts.weightsAs ?? 'initializers';
    const t0 = performance.now();
    const bytes = exportOnnxModel(config, weightsAs === 'inputs' ? null : weights, { weightsAs });
    const feeds = weightsAs === 'inputs' ? OnnxDecoder.feedsOf(config, weights) : {};
    const t1 = performance.now();
    const session = await ort.InferenceSession.create(bytes, {
      graphOptimizationLevel: 'all',
      intraOpNumThreads: opts.threads ?? 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
    });
    const t2 = performance.now();
    return new OnnxDecoder(config, { session, refs: 0 }, feeds, weightsAs, {
      encode: t1 - t0,
      session: t2 - t1,
    });
  }

  private static feedsOf(
    config: ModelConfig,
    weights: ReadonlyMap<string, WeightTensor>,
  ): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of weightInputTensors(config, weights))
      feeds[name] = new ort.Tensor('float32', t.data, t.shape);
    return feeds;
  }

  /**
   * A decoder over the same session with other weights (weights-as-inputs mode only): the
   * hot-load path that builds no session. Release each decoder when done with it.
   */
  withWeights(weights: ReadonlyMap<string, WeightTensor>): OnnxDecoder {
    if (this.weightsAs !== 'inputs')
      throw new Error('withWeights needs a decoder created with weightsAs: "inputs"');
    const t0 = performance.now();
    const feeds = OnnxDecoder.feedsOf(this.config, weights);
    return new OnnxDecoder(this.config, this.shared, feeds, 'inputs', {
      encode: performance.now() - t0,
      session: 0,
    });
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
      ...this.weightFeeds,
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

  /**
   * One decode step for several sequences at once (batch B): sequence b feeds tokens[b] at
   * position caches[b].len. Caches of different lengths are right-padded to the longest and
   * the padding masked out, so each row equals what step([token], cache) gives.
   */
  async stepBatch(
    tokens: readonly number[],
    caches: readonly KvCache[],
  ): Promise<{ rows: Float32Array[]; caches: KvCache[] }> {
    const c = this.config;
    const B = tokens.length;
    if (B !== caches.length || B === 0) throw new Error('stepBatch: one cache per token');
    const lens = caches.map((k) => k.len);
    const Lmax = Math.max(...lens);
    const T = Lmax + 1;
    if (T > c.maxPositions)
      throw new Error(`sequence of ${T} tokens exceeds max_position_embeddings ${c.maxPositions}`);
    const nkv = c.numKvHeads;
    const hd = c.headDim;
    const ids = BigInt64Array.from(tokens, (t) => BigInt(t));
    const pos = BigInt64Array.from(lens, (l) => BigInt(l));
    const bias = new Float32Array(B * T);
    for (let b = 0; b < B; b++)
      for (let j = lens[b] as number; j < Lmax; j++) bias[b * T + j] = Number.NEGATIVE_INFINITY;
    const feeds: Record<string, ort.Tensor> = {
      ...this.weightFeeds,
      input_ids: new ort.Tensor('int64', ids, [B, 1]),
      position_ids: new ort.Tensor('int64', pos, [B, 1]),
      attention_bias: new ort.Tensor('float32', bias, [B, 1, 1, T]),
    };
    const pad = (pick: (k: KvCache) => ort.Tensor): ort.Tensor => {
      const out = new Float32Array(B * nkv * Lmax * hd);
      for (let b = 0; b < B; b++) {
        const L = lens[b] as number;
        const src = pick(caches[b] as KvCache).data as Float32Array;
        for (let h = 0; h < nkv; h++)
          out.set(src.subarray(h * L * hd, (h + 1) * L * hd), (b * nkv + h) * Lmax * hd);
      }
      return new ort.Tensor('float32', out, [B, nkv, Lmax, hd]);
    };
    for (let l = 0; l < c.numLayers; l++) {
      feeds[`past_key_values.${l}.key`] = pad((k) => k.keys[l] as ort.Tensor);
      feeds[`past_key_values.${l}.value`] = pad((k) => k.values[l] as ort.Tensor);
    }
    const out = await this.session.run(feeds);
    const V = c.vocabSize;
    const lp = (out.logprobs as ort.Tensor).data as Float32Array;
    const rows = Array.from({ length: B }, (_, b) => lp.slice(b * V, (b + 1) * V));
    const grow = (b: number, old: ort.Tensor, present: ort.Tensor): ort.Tensor => {
      const L = lens[b] as number;
      const src = old.data as Float32Array;
      const p = present.data as Float32Array;
      const next = new Float32Array(nkv * (L + 1) * hd);
      for (let h = 0; h < nkv; h++) {
        next.set(src.subarray(h * L * hd, (h + 1) * L * hd), h * (L + 1) * hd);
        const at = ((b * nkv + h) * T + Lmax) * hd;
        next.set(p.subarray(at, at + hd), (h * (L + 1) + L) * hd);
      }
      return new ort.Tensor('float32', next, [1, nkv, L + 1, hd]);
    };
    const nextCaches = caches.map((k, b) => ({
      len: k.len + 1,
      keys: k.keys.map((t, l) => grow(b, t, out[`present.${l}.key`] as ort.Tensor)),
      values: k.values.map((t, l) => grow(b, t, out[`present.${l}.value`] as ort.Tensor)),
    }));
    return { rows, caches: nextCaches };
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
    if (this.released) return;
    this.released = true;
    if (--this.shared.refs === 0) await this.shared.session.release();
  }
}
