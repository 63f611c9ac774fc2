// One replica's serving state: the ONNX decoder of the snapshot it serves, generation with
// a prefix cache, and hot-load (download in parallel with inference, then an ASYNC or SYNC
// swap of the weights without restarting the process).
import type { SnapshotReader } from '../../checkpoints/deltas/snapshot.js';
import type { ModelConfig } from '../../engine/config.js';
import { type Logger, silentLogger } from '../log.js';
import type { DecoderWeight } from '../onnx/export.js';
import { cachePrefix, type KvCache, OnnxDecoder } from '../onnx/session.js';
import { createRng, sampleWithLogprob, topLogprobs } from './sampling.js';
import {
  checkIdentity,
  type HeldSnapshot,
  HotLoadError,
  type IncrementalMetadata,
  isAdapterSnapshot,
  mergedAdapterTensors,
  parseJsonObject,
  readSnapshot,
  SpareBuffers,
  snapshotWeights,
  validateSnapshotConfig,
} from './snapshots.js';

export type TransitionType = 'ASYNC' | 'SYNC';
export type ResetPromptCache = 'all' | 'none' | 'new_session';

export interface GenerateRequest {
  prompt: number[];
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  seed?: number | undefined;
  stopTokens: number[];
  topLogprobs: number;
  /**
   * Return training-aligned prompt logprobs, and with `topLogprobs` the alternatives at every
   * prompt position after the first (disables prefix-cache reuse for this request).
   */
  echo: boolean;
  sessionId?: string | undefined;
  /** A LoRA addon loaded with `loadAddon` to generate with (multi-LoRA); absent: the base. */
  adapter?: string | undefined;
  /** ASYNC swaps: how long a new request may wait for a swap before 425 (default 90 s). */
  drainTimeoutMs?: number | undefined;
}

export type GenerateEvent =
  | {
      type: 'prompt';
      promptLogprobs: (number | null)[] | null;
      /** With echo: the `topLogprobs` likeliest tokens at each prompt position (null at 0). */
      promptTop: ({ token: number; logprob: number }[] | null)[] | null;
      cachedTokens: number;
      prefillQueueMs: number;
      prefillMs: number;
      snapshot: string | null;
    }
  | {
      type: 'token';
      token: number;
      logprob: number;
      /** The token's logprob under the sampling distribution (temperature, top-k/p applied). */
      samplingLogprob: number;
      top: { token: number; logprob: number }[];
      snapshot: string | null;
    }
  | { type: 'done'; finishReason: 'stop' | 'length'; decodeMs: number; snapshot: string | null };

export interface LoadSignal {
  identity: string;
  incremental_snapshot_metadata?: IncrementalMetadata | undefined;
  reset_prompt_cache?: ResetPromptCache | undefined;
  validation?: { extra_fields_ignore?: string[] | undefined } | undefined;
}

export interface LoadRecord {
  identity: string;
  kind: 'full' | 'delta';
  signaledAt: string;
  readyAt: string | null;
  error: string | null;
  /** Milliseconds: fetch+reconstruct, session build, swap. */
  timing: { fetchMs: number; buildMs: number; swapMs: number } | null;
}

export interface ReplicaStatus {
  replica_id: string;
  readiness: boolean;
  current_snapshot_identity: string | null;
  /**
   * `stage`: queued, downloading, building, swapping, ready, or error (the last load failed;
   * the previous snapshot is still served). `target_snapshot_identity` is the snapshot the
   * stage is about (the Fireworks SDK reads it to tell its own failed load from a stale one);
   * `identity` is the same value under its older name.
   */
  loading_state: {
    stage: string;
    identity: string | null;
    target_snapshot_identity?: string | null;
    error: string | null;
  };
  loads: LoadRecord[];
  prefix_cache: { entries: number; hits: number; lookups: number };
  /** Batched decode: session calls that carried several sequences, and the steps they carried. */
  decode_batches: { batches: number; steps: number };
  /** Requests being served now, and tokens generated since start. */
  inflight: number;
  generated_tokens: number;
  /** LoRA addons served beside the current snapshot (multi-LoRA), by name. */
  addons?: { name: string; identity: string }[];
}

/**
 * A LoRA adapter served beside the base (multi-LoRA): its own decoder over the base weights
 * with the adapter merged in, chosen per request. `users` counts the requests generating with
 * it, so an unload or a reload frees the old decoder only after they end.
 */
interface Addon {
  name: string;
  identity: string;
  decoder: OnnxDecoder;
  users: number;
  removed: boolean;
}

interface StepOut {
  logprobs: Float32Array;
  cache: KvCache;
  snapshot: string | null;
}

interface PendingDecode {
  token: number;
  cache: KvCache;
  addon: Addon | undefined;
  resolve: (out: StepOut) => void;
  reject: (err: unknown) => void;
}

interface CacheEntry {
  /** The addon whose weights made the KV (undefined: the served snapshot). */
  addon: string | undefined;
  tokens: number[];
  cache: KvCache;
  /**
   * How many leading positions hold exactly the KV a prefill of the whole prompt computes:
   * positions a session call computed two or more at a time (ONNX Runtime's one-row matmul
   * rounds differently from its many-row one, so decoded tokens and one-token prefills are
   * not exact).
   */
  exact: number;
  sessionId: string | undefined;
  sessionOnly: boolean;
}

export interface ReplicaRuntimeOptions {
  replicaId: string;
  config: ModelConfig;
  baseConfig: Record<string, unknown>;
  /** Weights of the base model (served until the first hot-load). */
  baseWeights: HeldSnapshot;
  openSnapshot: (identity: string) => SnapshotReader;
  transition: TransitionType;
  maxConcurrent?: number;
  threads?: number;
  /**
   * How weights reach the ONNX session. 'initializers' (default): every snapshot opens a
   * session over its weights (onnxruntime prepacks them: decoding ~1.3x faster than with
   * 'inputs' on our shapes). 'inputs': one session, a snapshot swaps in without building one.
   */
  weightsAs?: 'initializers' | 'inputs';
  /** Test hook: sleep this long before every decode step. */
  stepDelayMs?: number;
  /** Test hook: hold the swap barrier (ASYNC) this long, as a slow weight swap would. */
  swapDelayMs?: number;
  prefixCacheEntries?: number;
  /**
   * Decode steps of up to this many concurrent sequences run as one batch (default 1: none).
   * Batching raises throughput but a row's last bits then depend on its batch-mates, so a seed
   * no longer reproduces a completion bit for bit.
   */
  maxDecodeBatch?: number;
  logger?: Logger;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class ReplicaRuntime {
  readonly id: string;
  private readonly opts: ReplicaRuntimeOptions;
  private decoder!: OnnxDecoder;
  /** The base model's weights (LoRA adapter snapshots merge onto them). */
  private baseWeights!: Map<string, DecoderWeight>;
  private held: HeldSnapshot;
  /**
   * The last full snapshot loaded, kept while deltas are served on top of it: the trainer
   * takes every delta against its last base, so the next delta names this snapshot, not the
   * one served, and applying it here spares reloading the base before each delta.
   */
  private root: HeldSnapshot | null = null;
  /** Buffers of snapshots no longer held, reused by the next delta. */
  private readonly spare = new SpareBuffers();
  private identity: string | null = null;
  private stage = 'ready';
  private stageIdentity: string | null = null;
  private stageError: string | null = null;
  private readonly loads: LoadRecord[] = [];
  private readonly prefetched = new Map<string, Map<string, Buffer>>();
  private loadChain: Promise<void> = Promise.resolve();
  // swap gates
  private barrier: Promise<void> | null = null;
  private draining = false;
  private running = 0;
  private inflight = 0;
  private idleWaiters: (() => void)[] = [];
  // admission
  private active = 0;
  private queue: (() => void)[] = [];
  // prefix cache
  private entries: CacheEntry[] = [];
  // decode batching
  private pendingDecode: PendingDecode[] = [];
  private flushing = false;
  private readonly batchStats = { batches: 0, steps: 0 };
  private generatedTokens = 0;
  /** The reset_prompt_cache of every swap so far (a request's epoch is the length at its start). */
  private readonly resets: ResetPromptCache[] = [];
  private hits = 0;
  private lookups = 0;
  private readonly addons = new Map<string, Addon>();
  /** Addon loads run one after another (each builds a decoder). */
  private addonChain: Promise<unknown> = Promise.resolve();

  private readonly log: Logger;

  private constructor(opts: ReplicaRuntimeOptions) {
    this.id = opts.replicaId;
    this.log = opts.logger ?? silentLogger();
    this.opts = opts;
    this.held = opts.baseWeights;
  }

  static async start(opts: ReplicaRuntimeOptions): Promise<ReplicaRuntime> {
    const r = new ReplicaRuntime(opts);
    r.baseWeights = snapshotWeights(opts.baseWeights);
    r.decoder = await OnnxDecoder.create(opts.config, r.baseWeights, {
      threads: opts.threads,
      weightsAs: opts.weightsAs ?? 'initializers',
    });
    return r;
  }

  get currentIdentity(): string | null {
    return this.identity;
  }

  status(): ReplicaStatus {
    return {
      replica_id: this.id,
      readiness: this.stage === 'ready' || this.stage === 'error',
      current_snapshot_identity: this.identity,
      loading_state: {
        stage: this.stage,
        identity: this.stageIdentity,
        target_snapshot_identity: this.stageIdentity,
        error: this.stageError,
      },
      loads: this.loads.map((l) => ({ ...l })),
      prefix_cache: { entries: this.entries.length, hits: this.hits, lookups: this.lookups },
      decode_batches: { ...this.batchStats },
      inflight: this.inflight,
      generated_tokens: this.generatedTokens,
      addons: [...this.addons.values()].map((a) => ({ name: a.name, identity: a.identity })),
    };
  }

  // ---------------------------------------------------------------------------------------
  // Generation
  // ---------------------------------------------------------------------------------------

  /** Resolves once the request may run; false when `signal` ended it while it waited. */
  private async admit(drainTimeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.draining)
      throw new HotLoadError('too_early', 'a SYNC weight swap is in progress; retry shortly');
    if (this.barrier) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), drainTimeoutMs);
      });
      const res = await Promise.race([this.barrier.then(() => 'ok' as const), timeout]);
      clearTimeout(timer);
      if (res === 'timeout')
        throw new HotLoadError(
          'too_early',
          `the weight swap did not finish within the drain timeout (${drainTimeoutMs / 1000} s)`,
        );
    }
    const max = this.opts.maxConcurrent ?? 8;
    if (this.active >= max) {
      // a request whose caller went away leaves the queue at once instead of holding its place
      const admitted = await new Promise<boolean>((resolve) => {
        const go = () => {
          signal?.removeEventListener('abort', gone);
          resolve(true);
        };
        const gone = () => {
          this.queue = this.queue.filter((q) => q !== go);
          resolve(false);
        };
        if (signal?.aborted) return resolve(false);
        signal?.addEventListener('abort', gone, { once: true });
        this.queue.push(go);
      });
      if (!admitted) return false;
    }
    if (signal?.aborted) {
      this.queue.shift()?.();
      return false;
    }
    this.active++;
    return true;
  }

  private release(): void {
    this.active--;
    this.queue.shift()?.();
  }

  /**
   * One forward step on the current weights, or an addon's; waits at an ASYNC swap barrier.
   */
  private async step(
    tokens: number[],
    cache: KvCache | undefined,
    addon: Addon | undefined,
  ): Promise<StepOut> {
    while (this.barrier) await this.barrier;
    this.running++;
    const identity = addon ? addon.identity : this.identity;
    const decoder = addon ? addon.decoder : this.decoder;
    try {
      const out = await decoder.step(tokens, cache ?? decoder.emptyCache());
      return { ...out, snapshot: identity };
    } finally {
      this.running--;
      if (this.running === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /**
   * One decode step; with batching on, the steps of concurrent sequences wait a tick and run
   * together in one session call.
   */
  private decodeStep(token: number, cache: KvCache, addon: Addon | undefined): Promise<StepOut> {
    if ((this.opts.maxDecodeBatch ?? 1) <= 1) return this.step([token], cache, addon);
    return new Promise((resolve, reject) => {
      this.pendingDecode.push({ token, cache, addon, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => void this.flushDecode());
      }
    });
  }

  private async flushDecode(): Promise<void> {
    try {
      while (this.pendingDecode.length > 0) {
        while (this.barrier) await this.barrier;
        // one batch runs on one set of weights: the first waiting sequence's, and the others
        // that use the same
        const head = (this.pendingDecode[0] as PendingDecode).addon;
        const max = this.opts.maxDecodeBatch ?? 1;
        const batch: PendingDecode[] = [];
        const later: PendingDecode[] = [];
        for (const p of this.pendingDecode)
          (p.addon === head && batch.length < max ? batch : later).push(p);
        this.pendingDecode = later;
        if (batch.length === 1) {
          const one = batch[0] as PendingDecode;
          this.step([one.token], one.cache, one.addon).then(one.resolve, one.reject);
        } else {
          this.running++;
          const identity = head ? head.identity : this.identity;
          const decoder = head ? head.decoder : this.decoder;
          this.batchStats.batches++;
          this.batchStats.steps += batch.length;
          try {
            const out = await decoder.stepBatch(
              batch.map((b) => b.token),
              batch.map((b) => b.cache),
            );
            batch.forEach((b, i) => {
              b.resolve({
                logprobs: out.rows[i] as Float32Array,
                cache: out.caches[i] as KvCache,
                snapshot: identity,
              });
            });
          } catch (err) {
            for (const b of batch) b.reject(err);
          } finally {
            this.running--;
            if (this.running === 0) for (const w of this.idleWaiters.splice(0)) w();
          }
        }
        // let the sequences just served sample and queue their next step
        await new Promise<void>((r) => setImmediate(r));
      }
    } finally {
      this.flushing = false;
    }
  }

  /**
   * The longest cached prefix of `prompt` to reuse. A seeded request reuses only exact KV and
   * leaves at least two prompt tokens to compute, so its logprobs, and so its draws, are the
   * same bits whether or not a sibling finished first: a seed reproduces a rollout whatever
   * the timing. Unseeded requests also reuse decoded tokens (a conversation's last answer).
   */
  private lookup(
    prompt: number[],
    sessionId: string | undefined,
    addon: string | undefined,
    seeded: boolean,
  ): { entry: CacheEntry; len: number } | null {
    this.lookups++;
    let best: { entry: CacheEntry; len: number } | null = null;
    for (const e of this.entries) {
      if (e.addon !== addon) continue;
      if (e.sessionOnly && (sessionId === undefined || e.sessionId !== sessionId)) continue;
      let m = 0;
      const lim = seeded
        ? Math.min(e.exact, prompt.length - 2)
        : Math.min(e.tokens.length, prompt.length - 1);
      while (m < lim && e.tokens[m] === prompt[m]) m++;
      if (m > 0 && (!best || m > best.len)) best = { entry: e, len: m };
    }
    if (best) this.hits++;
    return best;
  }

  /**
   * Keeps a finished sequence's KV for reuse. A sequence that lived through weight swaps
   * carries old-weight KV: after a swap with reset 'all' it is not kept, after 'new_session'
   * only its own session may reuse it.
   */
  private remember(
    tokens: number[],
    cache: KvCache,
    exact: number,
    sessionId: string | undefined,
    epoch: number,
    addon: Addon | undefined,
  ): void {
    const swaps = this.resets.slice(epoch);
    if (swaps.includes('all')) return;
    // an addon unloaded or reloaded meanwhile: its KV is of weights no longer served
    if (addon && this.addons.get(addon.name) !== addon) return;
    const sessionOnly = swaps.includes('new_session');
    this.entries = this.entries.filter(
      (e) => e.sessionId !== sessionId || sessionId === undefined || e.addon !== addon?.name,
    );
    this.entries.unshift({ addon: addon?.name, tokens, cache, exact, sessionId, sessionOnly });
    this.entries.length = Math.min(this.entries.length, this.opts.prefixCacheEntries ?? 16);
  }

  async generate(
    req: GenerateRequest,
    emit: (e: GenerateEvent) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const V = this.opts.config.vocabSize;
    for (const t of req.prompt)
      if (!Number.isInteger(t) || t < 0 || t >= V)
        throw new HotLoadError('invalid_argument', `prompt token ${t} is outside [0, ${V})`);
    if (req.prompt.length === 0) throw new HotLoadError('invalid_argument', 'prompt is empty');
    if (req.prompt.length + req.maxTokens > this.opts.config.maxPositions)
      throw new HotLoadError(
        'invalid_argument',
        `prompt (${req.prompt.length}) + max_tokens (${req.maxTokens}) exceeds the context of ${this.opts.config.maxPositions} tokens`,
      );
    const arrived = performance.now();
    const addon = this.useAddon(req.adapter);
    let admitted = false;
    try {
      admitted = await this.admit(req.drainTimeoutMs ?? 90_000, signal);
    } finally {
      if (!admitted) this.dropAddon(addon);
    }
    if (!admitted) return;
    this.inflight++;
    try {
      const queued = performance.now() - arrived;
      const epoch = this.resets.length;
      const t0 = performance.now();
      const seeded = req.seed !== undefined;
      const hit = req.echo ? null : this.lookup(req.prompt, req.sessionId, addon?.name, seeded);
      let cache: KvCache | undefined = hit ? cachePrefix(hit.entry.cache, hit.len) : undefined;
      const rest = req.prompt.slice(hit?.len ?? 0);
      // Exact positions of this sequence's KV: an inexact reused prefix ends them there; a
      // one-token prefill leaves its last position inexact.
      const exact =
        hit && hit.len > hit.entry.exact
          ? hit.entry.exact
          : rest.length >= 2
            ? req.prompt.length
            : req.prompt.length - 1;
      let r = await this.step(rest, cache, addon);
      cache = r.cache;
      let promptLogprobs: (number | null)[] | null = null;
      let promptTop: ({ token: number; logprob: number }[] | null)[] | null = null;
      if (req.echo) {
        promptLogprobs = [null];
        promptTop = [null];
        for (let i = 1; i < req.prompt.length; i++) {
          promptLogprobs.push(r.logprobs[(i - 1) * V + (req.prompt[i] as number)] as number);
          promptTop.push(topLogprobs(r.logprobs.subarray((i - 1) * V, i * V), req.topLogprobs));
        }
      }
      emit({
        type: 'prompt',
        promptLogprobs,
        promptTop,
        cachedTokens: hit?.len ?? 0,
        prefillQueueMs: queued,
        prefillMs: performance.now() - t0,
        snapshot: r.snapshot,
      });
      const rng = createRng(req.seed ?? Math.floor(Math.random() * 2 ** 32));
      const tokens = [...req.prompt];
      let finish: 'stop' | 'length' = 'length';
      const t1 = performance.now();
      for (let n = 0; n < req.maxTokens; n++) {
        if (signal?.aborted) break;
        const rows = r.logprobs.length / V;
        const row = r.logprobs.subarray((rows - 1) * V, rows * V);
        const { token: tok, samplingLogprob } = sampleWithLogprob(row, req, rng);
        this.generatedTokens++;
        emit({
          type: 'token',
          token: tok,
          logprob: row[tok] as number,
          samplingLogprob,
          top: topLogprobs(row, req.topLogprobs),
          snapshot: r.snapshot,
        });
        if (req.stopTokens.includes(tok)) {
          finish = 'stop';
          break;
        }
        if (n + 1 === req.maxTokens) break;
        tokens.push(tok);
        if (this.opts.stepDelayMs) await sleep(this.opts.stepDelayMs);
        r = await this.decodeStep(tok, cache, addon);
        cache = r.cache;
      }
      this.remember(tokens.slice(0, cache.len), cache, exact, req.sessionId, epoch, addon);
      emit({
        type: 'done',
        finishReason: finish,
        decodeMs: performance.now() - t1,
        snapshot: r.snapshot,
      });
    } finally {
      this.dropAddon(addon);
      this.inflight--;
      this.release();
      if (this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Multi-LoRA addons
  // ---------------------------------------------------------------------------------------

  /** The addon a request names, held for the request (undefined: the served snapshot). */
  private useAddon(name: string | undefined): Addon | undefined {
    if (name === undefined) return undefined;
    const addon = this.addons.get(name);
    if (!addon)
      throw new HotLoadError(
        'not_found',
        `LoRA addon '${name}' is not loaded on replica ${this.id} (loaded: ${[...this.addons.keys()].join(', ') || 'none'})`,
      );
    addon.users++;
    return addon;
  }

  private dropAddon(addon: Addon | undefined): void {
    if (!addon) return;
    addon.users--;
    this.retireAddon(addon);
  }

  /** Frees a removed addon's decoder once no request generates with it any more. */
  private retireAddon(addon: Addon): void {
    if (addon.removed && addon.users === 0) void addon.decoder.release().catch(() => {});
  }

  /**
   * Loads the LoRA adapter snapshot `identity` (PEFT layout, in the hot-load bucket) as the
   * addon `name`, served beside the base to requests that name it; a loaded name is replaced
   * (its requests in flight finish on the old weights). Resolves when it serves; a refused or
   * unreadable adapter throws and changes nothing.
   */
  loadAddon(name: string, identity: string): Promise<void> {
    checkIdentity(identity);
    const run = this.addonChain.then(async () => {
      const snap = await readSnapshot(this.opts.openSnapshot(identity), identity, undefined, null);
      if (!isAdapterSnapshot(snap))
        throw new HotLoadError(
          'invalid_argument',
          `${identity} is not a LoRA adapter (no adapter_config.json): an addon merges an adapter onto the base`,
        );
      const weights = await mergedAdapterTensors(snap, this.baseWeights);
      const decoder =
        this.decoder.weightsAs === 'inputs'
          ? this.decoder.withWeights(weights)
          : await OnnxDecoder.create(this.opts.config, weights, { threads: this.opts.threads });
      const old = this.addons.get(name);
      this.addons.set(name, { name, identity, decoder, users: 0, removed: false });
      if (old) this.forgetAddon(old);
      this.log.info({ addon: name, identity }, 'LoRA addon loaded');
    });
    this.addonChain = run.catch(() => {});
    return run;
  }

  /** Stops serving the addon `name`; false if it is not loaded. */
  unloadAddon(name: string): boolean {
    const addon = this.addons.get(name);
    if (!addon) return false;
    this.addons.delete(name);
    this.forgetAddon(addon);
    this.log.info({ addon: name }, 'LoRA addon unloaded');
    return true;
  }

  private forgetAddon(addon: Addon): void {
    addon.removed = true;
    this.entries = this.entries.filter((e) => e.addon !== addon.name);
    this.retireAddon(addon);
  }

  // ---------------------------------------------------------------------------------------
  // Hot-load
  // ---------------------------------------------------------------------------------------

  /** Prefetches one file of a snapshot (per-file hint). */
  hint(identity: string, filename: string): void {
    checkIdentity(identity);
    const files = this.prefetched.get(identity) ?? new Map<string, Buffer>();
    this.prefetched.set(identity, files);
    void this.opts
      .openSnapshot(identity)
      .read(filename)
      .then((b) => files.set(filename, b))
      .catch(() => {});
  }

  /** Starts a load in the background (loads run one after another); returns at once. */
  signal(sig: LoadSignal): LoadRecord {
    checkIdentity(sig.identity);
    const rec: LoadRecord = {
      identity: sig.identity,
      kind: sig.incremental_snapshot_metadata ? 'delta' : 'full',
      signaledAt: new Date().toISOString(),
      readyAt: null,
      error: null,
      timing: null,
    };
    this.loads.push(rec);
    this.stage = 'queued';
    this.stageIdentity = sig.identity;
    this.stageError = null;
    this.loadChain = this.loadChain.then(() => this.load(sig, rec));
    return rec;
  }

  /** Resolves when every signalled load has finished (ready or failed). */
  async settled(): Promise<void> {
    await this.loadChain;
  }

  private waitIdle(what: 'running' | 'inflight'): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if ((what === 'running' ? this.running : this.inflight) === 0) resolve();
        else this.idleWaiters.push(check);
      };
      check();
    });
  }

  private async load(sig: LoadSignal, rec: LoadRecord): Promise<void> {
    this.stageIdentity = sig.identity;
    let next: HeldSnapshot | null = null;
    try {
      this.stage = 'downloading';
      const t0 = performance.now();
      const prev = sig.incremental_snapshot_metadata?.previous_snapshot_identity;
      next = await readSnapshot(
        this.opts.openSnapshot(sig.identity),
        sig.identity,
        sig.incremental_snapshot_metadata,
        // a delta against the kept full snapshot applies to it; otherwise to the one served
        // (the held snapshot of the base model has no identity a delta can name)
        this.root && prev === this.root.identity && prev !== this.identity
          ? this.root
          : this.identity === null
            ? null
            : this.held,
        this.prefetched.get(sig.identity),
        this.spare,
      );
      this.prefetched.delete(sig.identity);
      const adapter = isAdapterSnapshot(next);
      const cfg = next.files.get('config.json');
      if (!cfg && !adapter)
        throw new HotLoadError('not_found', `snapshot ${sig.identity} has no config.json`);
      if (cfg) {
        const problem = validateSnapshotConfig(
          this.opts.baseConfig,
          parseJsonObject(cfg, `${sig.identity}/config.json`),
          sig.validation?.extra_fields_ignore ?? [],
        );
        if (problem) throw new HotLoadError('config_validation', problem);
      }
      this.stage = 'building';
      const t1 = performance.now();
      const weights = adapter
        ? await mergedAdapterTensors(next, this.baseWeights)
        : snapshotWeights(next);
      const decoder =
        this.decoder.weightsAs === 'inputs'
          ? this.decoder.withWeights(weights)
          : await OnnxDecoder.create(this.opts.config, weights, { threads: this.opts.threads });
      const t2 = performance.now();
      this.stage = 'swapping';
      const old = this.decoder;
      if (this.opts.transition === 'SYNC') {
        this.draining = true;
        await this.waitIdle('inflight');
        this.install(decoder, next, sig);
        this.draining = false;
      } else {
        let open!: () => void;
        this.barrier = new Promise((r) => {
          open = r;
        });
        await this.waitIdle('running');
        if (this.opts.swapDelayMs) await sleep(this.opts.swapDelayMs);
        this.install(decoder, next, sig);
        this.barrier = null;
        open();
      }
      const t3 = performance.now();
      void old.release().catch(() => {});
      rec.readyAt = new Date().toISOString();
      rec.timing = { fetchMs: t1 - t0, buildMs: t2 - t1, swapMs: t3 - t2 };
      this.log.info({ identity: sig.identity, kind: rec.kind, ...rec.timing }, 'snapshot loaded');
      this.stage = 'ready';
      this.stageError = null;
    } catch (err) {
      this.draining = false;
      // a snapshot decoded but refused later (config, session) returns its buffers
      if (next && next !== this.held) this.spare.give(this.ownBuffers(next, this.held));
      rec.error = (err as Error).message;
      this.log.warn(
        { identity: sig.identity, kind: rec.kind, error: rec.error },
        'snapshot load failed; still serving the previous snapshot',
      );
      this.stage = 'error';
      this.stageError = rec.error;
    }
  }

  private install(decoder: OnnxDecoder, next: HeldSnapshot, sig: LoadSignal): void {
    this.decoder = decoder;
    // a full snapshot becomes the root deltas are applied to (an adapter is no such root)
    if (!sig.incremental_snapshot_metadata) this.root = isAdapterSnapshot(next) ? null : next;
    this.retire(this.held, next);
    this.held = next;
    this.identity = sig.identity;
    const reset = sig.reset_prompt_cache ?? 'all';
    this.resets.push(reset);
    if (reset === 'all') this.entries = [];
    else if (reset === 'new_session') for (const e of this.entries) e.sessionOnly = true;
  }

  /**
   * Gives the buffers of the snapshot being replaced to the next delta. Called at the swap,
   * when no step runs on the old decoder any more; the base model's files (LoRA merges read
   * them) and files the new snapshot carries over are kept.
   */
  private retire(old: HeldSnapshot, next: HeldSnapshot): void {
    this.spare.keep(this.ownBuffers(old, next));
  }

  /** The buffers of `snap` that neither `other`, the kept root nor the base model holds. */
  private ownBuffers(snap: HeldSnapshot, other: HeldSnapshot): Buffer[] {
    const keep = new Set([
      ...other.files.values(),
      ...(this.root?.files.values() ?? []),
      ...this.opts.baseWeights.files.values(),
    ]);
    return [...snap.files.values()].filter((b) => !keep.has(b));
  }
}
