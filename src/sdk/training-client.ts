/**
 * TrainingClient: one model on a trainer pod, driven from the user's loop. Every method
 * returns a promise that rejects with a typed TrainerError on failure; nothing is swallowed.
 *
 * Ordering: each call takes its seq_id(s) when it is made, so operations run on the pod in
 * the order the program issued them even when the promises are awaited later. A custom loss
 * takes two consecutive seq_ids (forward, then backward), so an optim_step issued after it
 * runs after its backward pass. Transport failures are retried with the same seq_id (the pod
 * deduplicates), so a retry never applies an operation twice.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import {
  type AdamParamsSchema,
  CheckpointType,
  CustomOutput,
  type ForwardBackwardCustomResponse,
  GradAccumulationNormalization,
  type ModelInfo,
  Pooling,
  StopReason,
} from '../gen/temper/trainer/v1/trainer_pb.js';
import {
  backward,
  FIELDS,
  type LossDatum,
  LossError,
  type LossFn,
  mergeMetrics,
  normalizeMetrics,
  param,
  forwardBackward as runLossForwardBackward,
} from '../losses/index.js';
import type { TrainerClient } from '../trainer/client.js';
import { shardRanges } from '../trainer/data-parallel.js';
import { ERROR_CODE_METADATA_KEY, fromGrpcError, TrainerError } from '../trainer/errors.js';
import { decodeFloat32, decodeInt32, encodeBatched, encodeInt32 } from '../trainer/wire.js';
import {
  type AdamParams,
  type CustomEmbeddingResult,
  type CustomForwardBackwardResult,
  type DatumInput,
  decodeEmbeddingOutput,
  decodeOutput,
  type ForwardBackwardResult,
  type GradAccumulationNormalizationInput,
  ModelInput,
  type OptimStepResult,
  type OutputTensor,
  type SampleOptions,
  type SampleResult,
  toLossDatum,
  toWireDatum,
} from './types.js';

export interface TrainingClientInit {
  client: TrainerClient;
  info: ModelInfo;
  /** The trainer job the model lives on. */
  jobId: string;
  /** Default learning rate for optimStep (the service's `learningRate`). */
  learningRate?: number;
  /** Throws when the owning service was closed. */
  assertOpen: () => void;
  /** Transport retries per call (default 3). */
  retries?: number;
  /**
   * Data parallelism: the other replicas (ranks 1..N-1) of the model and rank 0's pod
   * address. Batches are sharded over the ranks and optimStep all-reduces their gradients
   * (src/trainer/data-parallel.ts); checkpoints and sampling go to rank 0.
   */
  dataParallel?: {
    rootAddress: string;
    /** Rank 0's pod token: the other ranks present it when they call rank 0. */
    rootToken: string;
    replicas: ReadonlyArray<{ client: TrainerClient; info: ModelInfo; jobId: string }>;
    /** ZeRO-1: each rank keeps only its shard of the AdamW moments. */
    shardOptimizerState?: boolean;
    /** Collectives over TCP even when the replicas share a host (no shared memory). */
    tcpCollectives?: boolean;
  };
}

/** One replica of the model: rank 0 is the client's own model. */
interface Rank {
  client: TrainerClient;
  modelId: string;
  jobId: string;
  nextSeq: number;
}

/** A batch shard: datums [start, end) go to `rank`. */
interface Shard {
  rank: Rank;
  start: number;
  end: number;
}

function mergeOutputs(parts: readonly ForwardBackwardResult[]): ForwardBackwardResult {
  if (parts.length === 1) return parts[0]!;
  return {
    lossFnOutputs: parts.flatMap((p) => p.lossFnOutputs),
    metrics: mergeMetrics(parts.map((p) => p.metrics)),
    lossFnOutputType: parts[0]?.lossFnOutputType ?? '',
  };
}

export interface SaveSamplerResult {
  /** Snapshot identity (name-sessionid), what a deployment hot-loads. */
  path: string;
  snapshotName: string;
  checkpointType: 'base' | 'delta';
  /** Checkpoint resource name: accounts/{a}/rlorTrainerJobs/{job}/checkpoints/{path}. */
  name: string;
  /** Object-store URL of the export. */
  uri: string;
  /** For a delta: the snapshot it applies on top of. */
  previousSnapshotIdentity?: string;
}

export interface ForwardBackwardCustomOptions {
  /**
   * What lossFn gets per datum: `logprobs` (default, shaped like its targets) or `embedding`
   * (the pooled final hidden state of its whole model input, [hiddenSize]).
   */
  output?: 'logprobs' | 'embedding';
  /** With `embedding`: `mean` over the datum's tokens (default) or its `last` token. */
  pooling?: 'mean' | 'last';
}

/**
 * Runs a custom loss on per-datum embeddings: d(loss)/d(embedding) per datum, checked finite.
 */
function embeddingForwardBackward(
  lossFn: LossFn,
  data: readonly LossDatum[],
  embeddings: readonly Float32Array[],
): ReturnType<typeof runLossForwardBackward> {
  if (data.length !== embeddings.length) {
    throw new LossError(
      'invalid_loss_input',
      `got ${data.length} datums but ${embeddings.length} embeddings; there must be one per datum`,
    );
  }
  const leaves = embeddings.map((e, i) => {
    for (let j = 0; j < e.length; j++) {
      if (!Number.isFinite(e[j]!)) {
        throw new LossError(
          'invalid_loss_input',
          `datum ${i}: embedding[${j}] is ${e[j]}; the trainer returned a non-finite embedding`,
        );
      }
    }
    return param(e);
  });
  const out = lossFn(data, leaves);
  if (out === null || typeof out !== 'object' || !out.loss || out.loss.length !== 1) {
    throw new LossError(
      'invalid_loss_output',
      'a loss function must return {loss, metrics} with a scalar (length-1) loss; reduce it with sum() or mean()',
    );
  }
  const loss = out.loss.item();
  if (!Number.isFinite(loss)) {
    throw new LossError('invalid_loss_output', `the loss is ${loss}`);
  }
  backward(out.loss);
  const grads = leaves.map((v, i) => {
    const g = v.grad ?? new Float64Array(v.length);
    for (let j = 0; j < g.length; j++) {
      if (!Number.isFinite(g[j]!)) {
        throw new LossError(
          'invalid_loss_input',
          `datum ${i}: d(loss)/d(embedding)[${j}] is ${g[j]}; the loss is not differentiable at these inputs`,
        );
      }
    }
    return g;
  });
  const lossFnOutputs = leaves.map((v) => ({
    logprobs: { data: v.value, shape: [v.length], dtype: 'float64' as const },
  }));
  return {
    loss,
    metrics: normalizeMetrics(out.metrics ?? {}),
    loss_fn_outputs: lossFnOutputs,
    grads,
  };
}

const NORMALIZATION = {
  none: GradAccumulationNormalization.NONE,
  num_loss_tokens: GradAccumulationNormalization.NUM_LOSS_TOKENS,
  num_sequences: GradAccumulationNormalization.NUM_SEQUENCES,
} as const;

export class TrainingClient {
  readonly modelId: string;
  readonly jobId: string;
  readonly forwardOnly: boolean;
  readonly loraRank: number;
  readonly maxContextLength: number;
  private readonly client: TrainerClient;
  private readonly learningRate: number | undefined;
  private readonly assertOpen: () => void;
  private readonly retries: number;
  /** Replicas in rank order; ranks[0] is this client's own model. */
  private readonly ranks: Rank[];
  private readonly rootAddress: string;
  private readonly rootToken: string;
  private readonly shardOptimizerState: boolean;
  private readonly tcpCollectives: boolean;

  constructor(init: TrainingClientInit) {
    this.client = init.client;
    this.modelId = init.info.modelId;
    this.jobId = init.jobId;
    this.forwardOnly = init.info.forwardOnly;
    this.loraRank = init.info.loraRank;
    this.maxContextLength = init.info.maxContextLength;
    this.learningRate = init.learningRate;
    this.assertOpen = init.assertOpen;
    this.retries = init.retries ?? 3;
    this.ranks = [
      {
        client: init.client,
        modelId: init.info.modelId,
        jobId: init.jobId,
        nextSeq: init.info.nextSeqId,
      },
      ...(init.dataParallel?.replicas ?? []).map((r) => ({
        client: r.client,
        modelId: r.info.modelId,
        jobId: r.jobId,
        nextSeq: r.info.nextSeqId,
      })),
    ];
    this.rootAddress = init.dataParallel?.rootAddress ?? '';
    this.rootToken = init.dataParallel?.rootToken ?? '';
    this.shardOptimizerState = init.dataParallel?.shardOptimizerState ?? false;
    this.tcpCollectives = init.dataParallel?.tcpCollectives ?? false;
  }

  /** Rank r's place in the data-parallel run, as every collective call carries it. */
  private place(r: number) {
    return {
      rank: r,
      worldSize: this.ranks.length,
      rootAddress: this.rootAddress,
      rootToken: this.rootToken,
      rootModelId: this.ranks[0]!.modelId,
      shardOptimizerState: this.shardOptimizerState,
      tcpCollectives: this.tcpCollectives,
    };
  }

  /** Data-parallel replicas serving this model (1 = a single pod). */
  get replicaCount(): number {
    return this.ranks.length;
  }

  /** Trainer job ids of the replicas, in rank order. */
  get replicaJobIds(): string[] {
    return this.ranks.map((r) => r.jobId);
  }

  /** The seq_id the next operation gets (on rank 0). */
  get nextSeqId(): number {
    return this.ranks[0]!.nextSeq;
  }

  private reserve(n = 1): number {
    return this.reserveOn(this.ranks[0]!, n);
  }

  private reserveOn(rank: Rank, n = 1): number {
    const seq = rank.nextSeq;
    rank.nextSeq += n;
    return seq;
  }

  /** The fixed split of a batch over the replicas (empty shards left out). */
  private shards(n: number): Shard[] {
    return shardRanges(n, this.ranks.length)
      .map(([start, end], r) => ({ rank: this.ranks[r]!, start, end }))
      .filter((s, i) => s.end > s.start || (n === 0 && i === 0));
  }

  /** One RPC with transport retries (same seq_id) and typed errors. */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (error) {
        const e = error as Partial<grpc.ServiceError>;
        const transport =
          e?.code === grpc.status.UNAVAILABLE &&
          e.metadata?.get(ERROR_CODE_METADATA_KEY).length === 0;
        if (!transport || attempt >= this.retries) throw fromGrpcError(error, what);
        await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
      }
    }
  }

  private guard(): Promise<void> {
    try {
      this.assertOpen();
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Model description from the pod (step, next seq_id, ...). */
  async info(): Promise<ModelInfo> {
    await this.guard();
    const res = await this.call('get_info', () => this.client.getInfo({ modelId: this.modelId }));
    if (!res.info) throw new TrainerError('internal', 'get_info: the trainer sent no info');
    return res.info;
  }

  /**
   * Forward pass only: per-datum logprobs (reference logprobs). With `lossType` the
   * built-in loss's metrics are computed too (its inputs must then be present).
   */
  async forward(datums: readonly DatumInput[], lossType?: string): Promise<ForwardBackwardResult> {
    await this.guard();
    const data = datums.map((d) => toWireDatum(d));
    const parts = this.shards(data.length).map(async ({ rank, start, end }) => {
      const seqId = this.reserveOn(rank);
      const res = await this.call('forward', () =>
        rank.client.forward({
          modelId: rank.modelId,
          seqId,
          data: data.slice(start, end),
          lossFn: lossType ?? '',
        }),
      );
      return decodeOutput(res.output, 'forward');
    });
    return mergeOutputs(await Promise.all(parts));
  }

  /** Forward and backward with a built-in loss (cross_entropy, importance_sampling, ppo, cispo, dro). */
  async forwardBackward(
    datums: readonly DatumInput[],
    lossType: string,
    lossFnConfig: Readonly<Record<string, number>> = {},
  ): Promise<ForwardBackwardResult> {
    await this.guard();
    const data = datums.map((d) => toWireDatum(d));
    const parts = this.shards(data.length).map(async ({ rank, start, end }) => {
      const seqId = this.reserveOn(rank);
      const res = await this.call('forward_backward', () =>
        rank.client.forwardBackward({
          modelId: rank.modelId,
          seqId,
          data: data.slice(start, end),
          lossFn: lossType,
          lossFnConfig: { ...lossFnConfig },
        }),
      );
      return decodeOutput(res.output, 'forward_backward');
    });
    return mergeOutputs(await Promise.all(parts));
  }

  /**
   * A custom loss: the pod computes logprobs (or, with `output: 'embedding'`, each datum's
   * pooled final hidden state over its whole model input), `lossFn` runs here with the
   * src/losses autodiff on one Vector per datum, and d(loss)/d(logprob) (or
   * d(loss)/d(embedding)) goes back to the pod, which back-propagates it. Gradients accumulate
   * until optimStep.
   */
  forwardBackwardCustom(
    datums: readonly DatumInput[],
    lossFn: LossFn,
    options: ForwardBackwardCustomOptions & { output: 'embedding' },
  ): Promise<CustomEmbeddingResult>;
  forwardBackwardCustom(
    datums: readonly DatumInput[],
    lossFn: LossFn,
    options?: ForwardBackwardCustomOptions & { output?: 'logprobs' },
  ): Promise<CustomForwardBackwardResult>;
  forwardBackwardCustom(
    datums: readonly DatumInput[],
    lossFn: LossFn,
    options?: ForwardBackwardCustomOptions,
  ): Promise<CustomForwardBackwardResult | CustomEmbeddingResult>;
  async forwardBackwardCustom(
    datums: readonly DatumInput[],
    lossFn: LossFn,
    options: ForwardBackwardCustomOptions = {},
  ): Promise<CustomForwardBackwardResult | CustomEmbeddingResult> {
    await this.guard();
    const output = options.output ?? 'logprobs';
    if (output !== 'logprobs' && output !== 'embedding') {
      throw new TrainerError(
        'invalid_argument',
        `forwardBackwardCustom: output must be 'logprobs' or 'embedding', got '${String(output)}'`,
      );
    }
    const embedding = output === 'embedding';
    const pooling = options.pooling ?? 'mean';
    if (pooling !== 'mean' && pooling !== 'last') {
      throw new TrainerError(
        'invalid_argument',
        `forwardBackwardCustom: pooling must be 'mean' or 'last', got '${String(pooling)}'`,
      );
    }
    const lossData = datums.map(toLossDatum);
    // Embeddings read only the model input; logprobs need the targets.
    const data = datums.map((d) => toWireDatum(d, embedding ? [] : [FIELDS.targetTokens]));
    const kind = embedding
      ? {
          output: CustomOutput.EMBEDDING,
          pooling: pooling === 'last' ? Pooling.LAST : Pooling.MEAN,
        }
      : {};
    // Phase 1 on every replica (its shard); the loss runs here over the whole batch.
    const shards = this.shards(data.length).map((shard) => ({
      ...shard,
      seqId: this.reserveOn(shard.rank, 2),
    }));
    const forwards = await Promise.allSettled(
      shards.map(async ({ rank, start, end, seqId }) => {
        const fwd = await this.call('forward_backward_custom', () =>
          rank.client.forwardBackwardCustom({
            modelId: rank.modelId,
            seqId,
            data: data.slice(start, end),
            ...kind,
          }),
        );
        return fwd.output;
      }),
    );
    const abortAll = async (): Promise<unknown[]> => {
      const aborts = await Promise.allSettled(
        shards.map(({ rank, seqId }) =>
          this.call('backward', () =>
            rank.client.backward({
              modelId: rank.modelId,
              seqId: seqId + 1,
              forwardSeqId: seqId,
              abort: true,
            }),
          ),
        ),
      );
      return aborts.flatMap((a) => (a.status === 'rejected' ? [a.reason] : []));
    };
    const failed = forwards.find((f) => f.status === 'rejected');
    if (failed) {
      // Release the replicas whose forward pass did run (an abort of a failed one is a no-op
      // error we do not report), then report the first failure.
      await abortAll();
      throw failed.reason;
    }
    const wire = forwards.map(
      (f) => (f as PromiseFulfilledResult<ForwardBackwardCustomResponse['output']>).value,
    );
    let out:
      | ForwardBackwardResult
      | (Omit<ForwardBackwardResult, 'lossFnOutputs'> & {
          lossFnOutputs: { embedding: OutputTensor }[];
        });
    let vectors: Float32Array[];
    let result: ReturnType<typeof runLossForwardBackward>;
    try {
      if (embedding) {
        const parts = wire.map((w) => decodeEmbeddingOutput(w, 'forward_backward_custom'));
        const lossFnOutputs = parts.flatMap((p) => p.lossFnOutputs);
        out = { lossFnOutputs, metrics: {}, lossFnOutputType: 'embedding' };
        vectors = lossFnOutputs.map((o) => o.embedding.data);
      } else {
        const logprobs = mergeOutputs(wire.map((w) => decodeOutput(w, 'forward_backward_custom')));
        out = logprobs;
        vectors = logprobs.lossFnOutputs.map((o) => o.logprobs.data);
      }
      result = embedding
        ? embeddingForwardBackward(lossFn, lossData, vectors)
        : runLossForwardBackward(lossFn, lossData, vectors);
    } catch (lossError) {
      // Release the pods' pending forward passes and the reserved seq_ids, then report the loss's error.
      const abortErrors = await abortAll();
      if (abortErrors.length > 0) {
        const first = abortErrors[0] as Error;
        throw new AggregateError(
          [lossError, ...abortErrors],
          `the custom loss failed (${(lossError as Error).message}) and releasing the trainer's forward pass failed too (${first.message})`,
        );
      }
      throw lossError;
    }
    const trailing = embedding
      ? []
      : ((out as ForwardBackwardResult).lossFnOutputs[0]?.logprobs.shape.slice(1) ?? []);
    const bwds = await Promise.all(
      shards.map(({ rank, start, end, seqId }) => {
        const grads = encodeBatched(result.grads.slice(start, end), 'float32', trailing);
        return this.call('backward', () =>
          rank.client.backward({
            modelId: rank.modelId,
            seqId: seqId + 1,
            forwardSeqId: seqId,
            ...(embedding ? { dEmbeddings: grads } : { dLogprobs: grads }),
            loss: result.loss,
            metrics: result.metrics,
          }),
        );
      }),
    );
    return {
      ...out,
      metrics: result.metrics,
      loss: result.loss,
      numLossTokens: bwds.reduce((n, b) => n + Number(b.numLossTokens), 0),
      numSequences: bwds.reduce((n, b) => n + Number(b.numSequences), 0),
    } as CustomForwardBackwardResult | CustomEmbeddingResult;
  }

  /** One AdamW step on the accumulated gradients, normalised as asked (default: none). */
  async optimStep(
    adamParams: AdamParams = {},
    gradAccumulationNormalization: GradAccumulationNormalizationInput = null,
  ): Promise<OptimStepResult> {
    await this.guard();
    const learningRate = adamParams.learningRate ?? this.learningRate;
    if (learningRate === undefined) {
      throw new TrainerError(
        'invalid_argument',
        'optimStep: adamParams.learningRate is required (or set learningRate on the service)',
      );
    }
    const mode = gradAccumulationNormalization ?? 'none';
    if (!Object.hasOwn(NORMALIZATION, mode)) {
      throw new TrainerError(
        'invalid_argument',
        `optimStep: gradAccumulationNormalization must be num_loss_tokens, num_sequences, none or null, got '${mode}'`,
      );
    }
    const params: MessageInitShape<typeof AdamParamsSchema> = { learningRate };
    if (adamParams.beta1 !== undefined) params.beta1 = adamParams.beta1;
    if (adamParams.beta2 !== undefined) params.beta2 = adamParams.beta2;
    if (adamParams.eps !== undefined) params.eps = adamParams.eps;
    if (adamParams.weightDecay !== undefined) params.weightDecay = adamParams.weightDecay;
    if (adamParams.gradClipNorm !== undefined) params.gradClipNorm = adamParams.gradClipNorm;
    // Every replica steps; with several, they all-reduce their gradients first and all apply
    // the same update (the answers are identical; rank 0's is returned).
    const world = this.ranks.length;
    const results = await Promise.all(
      this.ranks.map((rank, r) => {
        const seqId = this.reserveOn(rank);
        return this.call('optim_step', () =>
          rank.client.optimStep({
            modelId: rank.modelId,
            seqId,
            adamParams: params,
            gradAccumulationNormalization: NORMALIZATION[mode],
            ...(world > 1 ? { dataParallel: this.place(r) } : {}),
          }),
        );
      }),
    );
    const res = results[0]!;
    return {
      gradNorm: res.gradNorm,
      step: Number(res.step),
      numLossTokens: Number(res.numLossTokens),
      numSequences: Number(res.numSequences),
      gradScale: res.gradScale,
      metrics: { ...res.metrics },
    };
  }

  /** Samples continuations of `prompt` with the model's current weights (on the trainer). */
  async sample(
    prompt: ModelInput | readonly number[] | Int32Array,
    options: SampleOptions = {},
  ): Promise<SampleResult> {
    await this.guard();
    const tokens = ModelInput.toInts(prompt);
    const seqId = this.reserve();
    const res = await this.call('sample', () =>
      this.client.sample({
        modelId: this.modelId,
        seqId,
        prompt: encodeInt32(tokens),
        numSamples: options.numSamples ?? 1,
        promptLogprobs: options.promptLogprobs ?? false,
        samplingParams: {
          maxTokens: options.maxTokens ?? 16,
          ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
          topK: options.topK ?? 0,
          ...(options.topP !== undefined ? { topP: options.topP } : {}),
          seed: BigInt(options.seed ?? 0),
          stopTokens: [...(options.stopTokens ?? [])],
        },
      }),
    );
    const result: SampleResult = {
      sequences: res.sequences.map((s) => ({
        tokens: Array.from(decodeInt32(s.tokens, 'sample tokens')),
        logprobs: Array.from(decodeFloat32(s.logprobs, 'sample logprobs')),
        stopReason: s.stopReason === StopReason.STOP ? 'stop' : 'length',
      })),
    };
    if (res.promptLogprobs !== undefined) {
      result.promptLogprobs = Array.from(
        decodeFloat32(res.promptLogprobs, 'prompt logprobs'),
        (x) => (Number.isNaN(x) ? null : x),
      );
    }
    return result;
  }

  // ---- checkpoints ----

  /** Saves the train state (weights, optimizer, step) as `name`; resumable with loadStateWithOptimizer. */
  async saveState(
    name: string,
    options: { ttlSeconds?: number; timeout?: number } = {},
  ): Promise<{ path: string; step: number }> {
    await this.guard();
    // With sharded optimizer state every rank takes part (they gather the moment shards);
    // rank 0 writes the checkpoint and its answer is returned.
    const ranks = this.shardOptimizerState && this.ranks.length > 1 ? this.ranks : [this.ranks[0]!];
    const all = await Promise.all(
      ranks.map((rank, r) => {
        const seqId = this.reserveOn(rank);
        return this.call('save_state', () =>
          rank.client.saveState(
            {
              modelId: rank.modelId,
              seqId,
              name,
              ttlSeconds: BigInt(options.ttlSeconds ?? 0),
              ...(ranks.length > 1 ? { dataParallel: this.place(r) } : {}),
            },
            options.timeout !== undefined ? { timeoutMs: options.timeout * 1000 } : {},
          ),
        );
      }),
    );
    const res = all[0]!;
    return { path: res.path, step: Number(res.step) };
  }

  /** Loads the weights of a saveState checkpoint; the optimizer starts fresh (step 0). */
  async loadState(path: string): Promise<{ path: string; step: number }> {
    await this.guard();
    const all = await Promise.all(
      this.ranks.map((rank) => {
        const seqId = this.reserveOn(rank);
        return this.call('load_state', () =>
          rank.client.loadState({ modelId: rank.modelId, seqId, path }),
        );
      }),
    );
    const res = all[0]!;
    return { path: res.path, step: Number(res.step) };
  }

  /**
   * Restores weights, optimizer state and step of a saveState checkpoint. A sampler snapshot
   * is refused (`not_resumable`): it holds no optimizer state.
   */
  async loadStateWithOptimizer(path: string): Promise<{ path: string; step: number }> {
    await this.guard();
    const all = await Promise.all(
      this.ranks.map((rank, r) => {
        const seqId = this.reserveOn(rank);
        return this.call('load_state_with_optimizer', () =>
          rank.client.loadStateWithOptimizer({
            modelId: rank.modelId,
            seqId,
            path,
            ...(this.ranks.length > 1 ? { dataParallel: this.place(r) } : {}),
          }),
        );
      }),
    );
    const res = all[0]!;
    return { path: res.path, step: Number(res.step) };
  }

  /**
   * Exports servable weights: HF layout (full-parameter), a PEFT adapter (LoRA, always base),
   * or an arc_v2 delta against this model's last base save. Full-parameter saves are base
   * first and deltas afterwards unless `checkpointType` says otherwise. `path` is the
   * snapshot identity: the name suffixed with the session id.
   */
  async saveWeightsForSampler(
    name: string,
    options: { checkpointType?: 'base' | 'delta'; ttlSeconds?: number } = {},
  ): Promise<SaveSamplerResult> {
    await this.guard();
    const type =
      options.checkpointType === 'delta'
        ? CheckpointType.DELTA
        : options.checkpointType === 'base'
          ? CheckpointType.BASE
          : CheckpointType.UNSPECIFIED;
    const seqId = this.reserve();
    const res = await this.call('save_weights_for_sampler', () =>
      this.client.saveWeightsForSampler({
        modelId: this.modelId,
        seqId,
        name,
        checkpointType: type,
        ttlSeconds: BigInt(options.ttlSeconds ?? 0),
      }),
    );
    return {
      path: res.path,
      snapshotName: res.path,
      checkpointType: res.checkpointType === CheckpointType.DELTA ? 'delta' : 'base',
      name: res.name,
      uri: res.uri,
      ...(res.previousSnapshotIdentity
        ? { previousSnapshotIdentity: res.previousSnapshotIdentity }
        : {}),
    };
  }

  /** Ids of this trainer's resumable (saveState) checkpoints, oldest first. */
  async listCheckpoints(): Promise<string[]> {
    await this.guard();
    const seqId = this.reserve();
    const res = await this.call('list_checkpoints', () =>
      this.client.listCheckpoints({ modelId: this.modelId, seqId }),
    );
    return res.checkpoints.filter((c) => c.resumable).map((c) => c.name);
  }

  /** The path of checkpoint `checkpointName` of trainer job `sourceJobId` (cross-job resume). */
  async resolveCheckpointPath(checkpointName: string, sourceJobId: string): Promise<string> {
    await this.guard();
    const seqId = this.reserve();
    const res = await this.call('resolve_checkpoint_path', () =>
      this.client.resolveCheckpointPath({
        modelId: this.modelId,
        seqId,
        checkpointName,
        sourceJobId,
      }),
    );
    return res.path;
  }

  /** Loads a PEFT adapter (directory, or a LoRA sampler snapshot of this trainer); weights only. */
  async loadAdapter(adapterPath: string): Promise<void> {
    await this.guard();
    await Promise.all(
      this.ranks.map((rank) => {
        const seqId = this.reserveOn(rank);
        return this.call('load_adapter', () =>
          rank.client.loadAdapter({ modelId: rank.modelId, seqId, adapterPath }),
        );
      }),
    );
  }
}
