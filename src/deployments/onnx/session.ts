// An onnxruntime-node (CPU) session over the exported decoder, with a KV cache per sequence.
//
// The cache of a sequence lives in JS-owned buffers, one [kv_heads, capacity, head_dim] array
// per layer for keys and one for values, fed to GroupQueryAttention as they are (zero-copy);
// a step gets back only the new tokens' rows (the graph's new_kv output) and appends them.
// Steps along one sequence therefore append in place. A cache value stays valid after a step
// was taken from it (rows below its length never change), and taking a second step from an
// older value (a fork: prefix-cache reuse, tests) copies its rows into a fresh buffer first.
import * as ort from 'onnxruntime-node';
import type { ModelConfig } from '../../engine/config.js';
import { bf16ToF32, f16ToF32 } from '../../engine/dtype.js';
import {
  type DecoderWeight,
  expectedWeightNames,
  exportOnnxGraph,
  exportOnnxModel,
  isRawWeight,
} from './export.js';

/** Buffers shared by the successive cache values of one sequence. */
class KvStore {
  /** Rows written so far, and the cache value allowed to append (the latest one). */
  filled = 0;
  owner: KvCache | null = null;
  readonly keys: Float32Array[];
  readonly values: Float32Array[];
  /** The ort.Tensor views fed to the session, made once per buffer. */
  readonly feeds: Record<string, ort.Tensor> = {};

  constructor(
    readonly config: ModelConfig,
    readonly capacity: number,
  ) {
    const size = config.numKvHeads * capacity * config.headDim;
    const alloc = () => Array.from({ length: config.numLayers }, () => new Float32Array(size));
    this.keys = alloc();
    this.values = alloc();
    const dims = [1, config.numKvHeads, capacity, config.headDim];
    for (let l = 0; l < config.numLayers; l++) {
      this.feeds[`past_key_values.${l}.key`] = new ort.Tensor('float32', this.keys[l]!, dims);
      this.feeds[`past_key_values.${l}.value`] = new ort.Tensor('float32', this.values[l]!, dims);
    }
  }

  /** Copies the first `rows` rows of every head of `from` (which may have another capacity). */
  copyRows(from: KvStore, rows: number): void {
    const { numKvHeads: H, headDim: hd } = this.config;
    const copy = (dst: Float32Array, src: Float32Array) => {
      for (let h = 0; h < H; h++)
        dst.set(
          src.subarray(h * from.capacity * hd, (h * from.capacity + rows) * hd),
          h * this.capacity * hd,
        );
    };
    for (let l = 0; l < this.config.numLayers; l++) {
      copy(this.keys[l]!, from.keys[l]!);
      copy(this.values[l]!, from.values[l]!);
    }
  }

  /**
   * Writes rows [at, at + S) of every layer from new_kv (batch row `b` of a [B, S, width]
   * output, width = 2·layers·kv_heads·head_dim, layer-major, key before value).
   */
  append(kv: Float32Array, b: number, S: number, at: number): void {
    const { numKvHeads: H, headDim: hd, numLayers: L } = this.config;
    const D = H * hd;
    for (let s = 0; s < S; s++) {
      const row = (b * S + s) * 2 * L * D;
      for (let l = 0; l < L; l++) {
        const k = this.keys[l]!;
        const v = this.values[l]!;
        for (let h = 0; h < H; h++) {
          const src = row + 2 * l * D + h * hd;
          const dst = (h * this.capacity + at + s) * hd;
          k.set(kv.subarray(src, src + hd), dst);
          v.set(kv.subarray(src + D, src + D + hd), dst);
        }
      }
    }
    this.filled = at + S;
  }
}

/** The KV cache of one sequence at `len` tokens (immutable value; see the file comment). */
export interface KvCache {
  readonly len: number;
  readonly store: KvStore;
}

/** The first `len` tokens of a cache (a fork: the next step from it copies). */
export function cachePrefix(cache: KvCache, len: number): KvCache {
  if (len > cache.len) throw new RangeError(`cache has ${cache.len} tokens, not ${len}`);
  return { len, store: cache.store };
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

/** A weight as float32: a view of its bytes when they are aligned float32, else a converted copy. */
export function float32Of(w: DecoderWeight): Float32Array {
  if (!isRawWeight(w)) return w.data;
  const { dtype, bytes } = w;
  if (dtype === 'F32' && bytes.byteOffset % 4 === 0)
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  // an aligned copy (Buffer#slice would be a view)
  const own = new Uint8Array(bytes).buffer;
  if (dtype === 'F32') return new Float32Array(own);
  if (dtype === 'F64') return Float32Array.from(new Float64Array(own));
  return dtype === 'BF16' ? bf16ToF32(new Uint16Array(own)) : f16ToF32(new Uint16Array(own));
}

/** Capacity for `need` rows: headroom so that a decode appends ~32 steps before regrowing. */
function capacityFor(c: ModelConfig, need: number): number {
  return Math.min(c.maxPositions, Math.ceil((need + 32) / 32) * 32);
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

  /**
   * Opens a session over `weights` (by HF name; float32 arrays or raw snapshot bytes). With
   * initializers (the default) onnxruntime copies and prepacks the weights: the fastest
   * decoding (its M=1 kernels on unpacked inputs are ~1.3x slower on our shapes), and the
   * caller may reuse the buffers once this resolves.
   */
  static async create(
    config: ModelConfig,
    weights: ReadonlyMap<string, DecoderWeight>,
    opts: OnnxDecoderOptions = {},
  ): Promise<OnnxDecoder> {
    const weightsAs = opts.weightsAs ?? 'initializers';
    const t0 = performance.now();
    const graph =
      weightsAs === 'inputs'
        ? { model: exportOnnxModel(config, null, { weightsAs }), externalData: [] }
        : exportOnnxGraph(config, weights);
    const feeds = weightsAs === 'inputs' ? OnnxDecoder.feedsOf(config, weights) : {};
    const t1 = performance.now();
    const session = await ort.InferenceSession.create(graph.model, {
      graphOptimizationLevel: 'all',
      intraOpNumThreads: opts.threads ?? 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      externalData: graph.externalData,
    });
    const t2 = performance.now();
    return new OnnxDecoder(config, { session, refs: 0 }, feeds, weightsAs, {
      encode: t1 - t0,
      session: t2 - t1,
    });
  }

  /**
   * Feeds over the weights' own buffers where they are aligned float32 (HF layout is what the
   * graph reads), converted copies otherwise.
   */
  private static feedsOf(
    config: ModelConfig,
    weights: ReadonlyMap<string, DecoderWeight>,
  ): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const name of expectedWeightNames(config)) {
      const t = weights.get(name);
      if (!t) throw new Error(`missing weight ${name}`);
      feeds[name] = new ort.Tensor('float32', float32Of(t), t.shape);
    }
    return feeds;
  }

  /**
   * A decoder over the same session with other weights (weights-as-inputs mode only): the
   * hot-load path that builds no session. The weights' buffers are read on every step, so
   * they must not change while this decoder serves. Release each decoder when done with it.
   */
  withWeights(weights: ReadonlyMap<string, DecoderWeight>): OnnxDecoder {
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
    const store = new KvStore(this.config, 0);
    const cache = { len: 0, store };
    store.owner = cache;
    return cache;
  }

  /** The store `cache` may append `need` rows' worth to: its own, grown or forked as needed. */
  private writable(cache: KvCache, need: number): KvStore {
    const s = cache.store;
    if (s.owner === cache && s.filled === cache.len && s.capacity >= need) return s;
    const next = new KvStore(this.config, capacityFor(this.config, need));
    next.copyRows(s, cache.len);
    return next;
  }

  private checkLength(total: number): void {
    if (total > this.config.maxPositions)
      throw new Error(
        `sequence of ${total} tokens exceeds max_position_embeddings ${this.config.maxPositions}`,
      );
  }

  /** Runs `tokens` at positions cache.len.. and returns their log-prob rows and the grown cache. */
  async step(tokens: readonly number[], cache: KvCache = this.emptyCache()): Promise<StepResult> {
    const S = tokens.length;
    const past = cache.len;
    const total = past + S;
    if (S === 0) throw new Error('step: no tokens');
    this.checkLength(total);
    const store = this.writable(cache, total);
    const pos = new BigInt64Array(S);
    for (let i = 0; i < S; i++) pos[i] = BigInt(past + i);
    const out = await this.session.run({
      ...this.weightFeeds,
      ...store.feeds,
      input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [1, S]),
      position_ids: new ort.Tensor('int64', pos, [1, S]),
      seqlens_k: new ort.Tensor('int32', Int32Array.of(total - 1), [1]),
      total_sequence_length: new ort.Tensor('int32', Int32Array.of(total), []),
    });
    store.append((out.new_kv as ort.Tensor).data as Float32Array, 0, S, past);
    const next: KvCache = { len: total, store };
    store.owner = next;
    return { logprobs: (out.logprobs as ort.Tensor).data as Float32Array, cache: next };
  }

  /**
   * One decode step for several sequences at once (batch B): sequence b feeds tokens[b] at
   * position caches[b].len. GroupQueryAttention reads each sequence's own length (seqlens_k),
   * so shorter caches are simply right-padded in the batch's buffer; each row equals what
   * step([token], cache) gives.
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
    this.checkLength(Lmax + 1);
    const out = await this.session.run({
      ...this.weightFeeds,
      ...this.batchPast(caches, Lmax),
      input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [B, 1]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from(lens, BigInt), [B, 1]),
      seqlens_k: new ort.Tensor('int32', Int32Array.from(lens), [B]),
      total_sequence_length: new ort.Tensor('int32', Int32Array.of(Lmax + 1), []),
    });
    const V = c.vocabSize;
    const lp = (out.logprobs as ort.Tensor).data as Float32Array;
    const kv = (out.new_kv as ort.Tensor).data as Float32Array;
    const nextCaches = caches.map((k, b) => {
      const store = this.writable(k, k.len + 1);
      store.append(kv, b, 1, k.len);
      const next: KvCache = { len: k.len + 1, store };
      store.owner = next;
      return next;
    });
    const rows = Array.from({ length: B }, (_, b) => lp.slice(b * V, (b + 1) * V));
    return { rows, caches: nextCaches };
  }

  /** The past of a batch: every cache's rows in one [B, kv_heads, Lmax, head_dim] buffer. */
  private batchPast(caches: readonly KvCache[], Lmax: number): Record<string, ort.Tensor> {
    const c = this.config;
    const H = c.numKvHeads;
    const hd = c.headDim;
    const B = caches.length;
    const feeds: Record<string, ort.Tensor> = {};
    const gather = (pick: (s: KvStore) => Float32Array): ort.Tensor => {
      const buf = new Float32Array(B * H * Lmax * hd);
      caches.forEach((k, b) => {
        const src = pick(k.store);
        const cap = k.store.capacity;
        for (let h = 0; h < H; h++)
          buf.set(src.subarray(h * cap * hd, (h * cap + k.len) * hd), (b * H + h) * Lmax * hd);
      });
      return new ort.Tensor('float32', buf, [B, H, Lmax, hd]);
    };
    for (let l = 0; l < c.numLayers; l++) {
      feeds[`past_key_values.${l}.key`] = gather((s) => s.keys[l]!);
      feeds[`past_key_values.${l}.value`] = gather((s) => s.values[l]!);
    }
    return feeds;
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
