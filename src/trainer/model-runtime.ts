/**
 * The operations of one model on a pod: forward, forward_backward with a built-in loss, the
 * two phases of a custom loss, optim_step with gradient-accumulation normalisation, and
 * sampling. Callers order a model's calls through its OpQueue; engine work runs on the
 * engine's worker thread, holding the engine (EngineHost.exclusive) for the whole operation.
 * Input is validated before the engine runs, so a call either returns a wire response or
 * throws a typed error having changed nothing the caller could observe.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import { type AdamParams, adamParamsSchema, EngineError } from '../engine/model.js';
import type { Pooling as EnginePooling } from '../engine/native.js';
import {
  type BackwardRequest,
  type BackwardResponseSchema,
  CustomOutput,
  type ForwardBackwardCustomRequest,
  type ForwardBackwardOutputSchema,
  type ForwardBackwardRequest,
  type ForwardRequest,
  GradAccumulationNormalization,
  type ModelInfoSchema,
  type OptimStepRequest,
  type OptimStepResponseSchema,
  Pooling,
  type SampleRequest,
  type SampleResponseSchema,
  StopReason,
} from '../gen/temper/trainer/v1/trainer_pb.js';
import {
  builtinLoss,
  countLossSequences,
  countLossTokens,
  type GradAccNormalization,
  GradAccumulationCounter,
  gradAccumulationScale,
  type LossFn,
  forward as lossForward,
  forwardBackward as lossForwardBackward,
  type Metrics,
} from '../losses/index.js';
import {
  type BatchLimits,
  type DecodedBatch,
  type DecodedTokenBatch,
  decodeBatch,
  decodeTokenBatch,
  packEmbeddingGradients,
  packGradients,
  splitLogprobs,
} from './batch.js';
import type { GradCounts, ReplicaPlace, StepParams } from './data-parallel.js';
import type { EngineHost } from './engine-host.js';
import { TrainerError } from './errors.js';
import { decodeBatched, decodeInt32, encodeArray, encodeBatched, encodeInt32 } from './wire.js';

type OutputInit = MessageInitShape<typeof ForwardBackwardOutputSchema>;

export interface ModelRuntimeOptions {
  id: string;
  sessionId: string;
  baseModel: string;
  host: EngineHost;
  /** Whether the engine's adapter is on for this model (off for a base reference). */
  adapter: boolean;
  forwardOnly: boolean;
  limits: BatchLimits;
  /** The model whose engine this one shares, if any. */
  sharesBaseWith?: string;
}

/**
 * All-reduces one rank's gradients (in place, in the engine's buffers) and counts with the
 * other replicas of a data-parallel run (see data-parallel.ts); resolves to the global counts.
 * Called under the engine lock.
 */
export type AllReduce = (
  runtime: ModelRuntime,
  dp: ReplicaPlace,
  local: GradCounts,
) => Promise<GradCounts>;

/**
 * The ZeRO-1 optimizer step of a replica with sharded optimizer state (see data-parallel.ts):
 * after the all-reduce of the counts, under the engine lock.
 */
export type ShardedStep = (
  runtime: ModelRuntime,
  dp: ReplicaPlace,
  params: StepParams,
) => Promise<{ gradNorm: number; step: number }>;

type PendingForward =
  | { kind: 'logprobs'; seqId: number; batch: DecodedBatch; owner: object }
  | {
      kind: 'embedding';
      seqId: number;
      batch: DecodedTokenBatch;
      pooling: EnginePooling;
      hidden: number;
      owner: object;
    };

const POOLING: Record<Pooling, EnginePooling> = {
  [Pooling.UNSPECIFIED]: 'mean',
  [Pooling.MEAN]: 'mean',
  [Pooling.LAST]: 'last',
};

const NORMALIZATION: Record<GradAccumulationNormalization, GradAccNormalization> = {
  [GradAccumulationNormalization.UNSPECIFIED]: 'none',
  [GradAccumulationNormalization.NONE]: 'none',
  [GradAccumulationNormalization.NUM_LOSS_TOKENS]: 'num_loss_tokens',
  [GradAccumulationNormalization.NUM_SEQUENCES]: 'num_sequences',
};

function logprobsOutput(
  batch: DecodedBatch,
  logprobs: Float32Array[],
  metrics: Metrics,
  type: string,
): OutputInit {
  // Top-K datums carry [rows, k]; a batch mixing K values is sent without a trailing shape
  // and each datum's logprobs keep its row-major layout.
  const ks = new Set(batch.layouts.map((l) => (l.shape.length === 2 ? l.k : 0)));
  const k = ks.size === 1 ? [...ks][0]! : 0;
  return {
    lossFnOutputType: type,
    lossFnOutputs: { logprobs: encodeBatched(logprobs, 'float32', k > 0 ? [k] : []) },
    numDatums: BigInt(batch.layouts.length),
    metrics,
  };
}

export class ModelRuntime {
  readonly id: string;
  readonly sessionId: string;
  readonly baseModel: string;
  readonly host: EngineHost;
  readonly adapter: boolean;
  readonly forwardOnly: boolean;
  readonly limits: BatchLimits;
  readonly sharesBaseWith: string | undefined;
  private readonly counter = new GradAccumulationCounter();
  private pending: PendingForward | null = null;
  private readonly owner = {};

  constructor(options: ModelRuntimeOptions) {
    this.id = options.id;
    this.sessionId = options.sessionId;
    this.baseModel = options.baseModel;
    this.host = options.host;
    this.adapter = options.adapter;
    this.forwardOnly = options.forwardOnly;
    this.limits = options.limits;
    this.sharesBaseWith = options.sharesBaseWith;
  }

  info(nextSeqId: number): MessageInitShape<typeof ModelInfoSchema> {
    const model = this.host.model;
    const lora = this.host.isLora && this.adapter ? model.lora : null;
    const trainable = this.forwardOnly
      ? 0
      : model
          .tensorInfo()
          .filter((t) => t.trainable)
          .reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
    return {
      modelId: this.id,
      sessionId: this.sessionId,
      baseModel: this.baseModel,
      isLora: lora !== null,
      loraRank: lora?.rank ?? 0,
      forwardOnly: this.forwardOnly,
      vocabSize: this.limits.vocabSize,
      maxContextLength: this.limits.maxContextLength,
      step: BigInt(this.forwardOnly ? 0 : model.step),
      nextSeqId,
      trainableParameters: BigInt(trainable),
      sharesBaseWithModelId: this.sharesBaseWith ?? '',
    };
  }

  /** Gradients accumulated since the last step (tokens with a non-zero gradient). */
  get accumulated(): { tokens: number; sequences: number; microBatches: number } {
    return {
      tokens: this.counter.tokens,
      sequences: this.counter.sequences,
      microBatches: this.counter.microBatches,
    };
  }

  /** Forgets accumulated gradients and any pending custom forward (after loading weights). */
  resetAccumulation(): void {
    this.counter.reset();
    this.pending = null;
    this.host.dropActivations();
    if (!this.forwardOnly) this.host.model.zeroGrad();
  }

  private assertTrainable(op: string): void {
    if (this.forwardOnly) {
      throw new TrainerError(
        'forward_only',
        `${op}: model ${this.id} is forward-only (a reference or base model); use forward or sample, or a training client`,
      );
    }
  }

  private decode(data: ForwardRequest['data']): DecodedBatch {
    return decodeBatch(data, this.limits);
  }

  private lossFn(name: string, config: Record<string, number>): LossFn {
    return builtinLoss(name, config);
  }

  forward(req: ForwardRequest): Promise<OutputInit> {
    const lossFn = req.lossFn ? this.lossFn(req.lossFn, req.lossFnConfig) : null;
    const batch = this.decode(req.data);
    return this.host.exclusive(async () => {
      const flat = await this.host.forward(batch.sequences, this.adapter);
      const logprobs = splitLogprobs(batch, flat);
      const metrics = lossFn ? lossForward(lossFn, batch.datums, logprobs).metrics : {};
      return logprobsOutput(batch, logprobs, metrics, req.lossFn || 'logprobs');
    });
  }

  forwardBackward(req: ForwardBackwardRequest): Promise<OutputInit> {
    this.assertTrainable('forward_backward');
    if (!req.lossFn) {
      throw new TrainerError(
        'unknown_loss',
        'forward_backward: loss_fn is empty; name a built-in loss (cross_entropy, importance_sampling, ppo, cispo, dro) or use forward_backward_custom',
        { field: 'loss_fn' },
      );
    }
    const lossFn = this.lossFn(req.lossFn, req.lossFnConfig);
    const batch = this.decode(req.data);
    return this.host.exclusive(async () => {
      const owner = {};
      const flat = await this.host.forwardForBackward(batch.sequences, this.adapter, owner);
      const logprobs = splitLogprobs(batch, flat);
      const result = lossForwardBackward(lossFn, batch.datums, logprobs);
      const d = packGradients(batch, result.grads);
      await this.host.backward(batch.sequences, this.adapter, owner, d);
      this.counter.add(result.grads);
      return logprobsOutput(batch, logprobs, result.metrics, req.lossFn);
    });
  }

  /**
   * Phase 1 of a custom loss: forward keeping activations; returns the logprobs, or with
   * output EMBEDDING each datum's pooled final hidden state.
   */
  forwardBackwardCustom(req: ForwardBackwardCustomRequest, seqId: number): Promise<OutputInit> {
    this.assertTrainable('forward_backward_custom');
    if (req.output === CustomOutput.EMBEDDING) return this.forwardEmbeddingCustom(req, seqId);
    if (req.output !== CustomOutput.UNSPECIFIED && req.output !== CustomOutput.LOGPROBS) {
      throw new TrainerError(
        'invalid_argument',
        `forward_backward_custom: unknown output ${req.output}; expected logprobs or embedding`,
        { field: 'output' },
      );
    }
    const batch = this.decode(req.data);
    return this.host.exclusive(async () => {
      this.pending = null;
      const flat = await this.host.forwardForBackward(batch.sequences, this.adapter, this.owner);
      this.pending = { kind: 'logprobs', seqId, batch, owner: this.owner };
      return logprobsOutput(batch, splitLogprobs(batch, flat), {}, 'logprobs');
    });
  }

  private forwardEmbeddingCustom(
    req: ForwardBackwardCustomRequest,
    seqId: number,
  ): Promise<OutputInit> {
    const pooling = POOLING[req.pooling];
    if (pooling === undefined) {
      throw new TrainerError(
        'invalid_argument',
        `forward_backward_custom: unknown pooling ${req.pooling}; expected mean or last`,
        { field: 'pooling' },
      );
    }
    const batch = decodeTokenBatch(req.data, this.limits);
    const hidden = this.host.model.config.hiddenSize;
    return this.host.exclusive(async () => {
      this.pending = null;
      const flat = await this.host.forwardHiddenForBackward(
        batch.sequences,
        pooling,
        this.adapter,
        this.owner,
      );
      this.pending = { kind: 'embedding', seqId, batch, pooling, hidden, owner: this.owner };
      const parts = batch.sequences.map((_, i) => flat.slice(i * hidden, (i + 1) * hidden));
      return {
        lossFnOutputType: 'embedding',
        lossFnOutputs: { embedding: encodeBatched(parts, 'float32', []) },
        numDatums: BigInt(parts.length),
        metrics: {},
      };
    });
  }

  /** Phase 2 of a custom loss: back-propagates the client's d(loss)/d(logprob). */
  async backward(req: BackwardRequest): Promise<MessageInitShape<typeof BackwardResponseSchema>> {
    this.assertTrainable('backward');
    const pending = this.pending;
    if (!pending || pending.seqId !== req.forwardSeqId) {
      throw new TrainerError(
        'no_pending_forward',
        pending
          ? `backward: forward_seq_id ${req.forwardSeqId} is not the pending custom forward pass (seq_id ${pending.seqId})`
          : `backward: no custom forward pass is pending (forward_seq_id ${req.forwardSeqId}); call forward_backward_custom first — an optimizer step or a completed backward consumes it`,
        { field: 'forward_seq_id' },
      );
    }
    if (req.abort) {
      this.pending = null;
      return { numLossTokens: 0n, numSequences: 0n };
    }
    if (pending.kind === 'embedding') return this.backwardEmbedding(req, pending);
    if (req.dEmbeddings) {
      throw new TrainerError(
        'invalid_datum',
        `backward: d_embeddings sent but the pending forward pass (seq_id ${pending.seqId}) returned logprobs; send d_logprobs`,
        { field: 'd_embeddings' },
      );
    }
    if (!req.dLogprobs) {
      throw new TrainerError('invalid_datum', 'backward: d_logprobs is missing', {
        field: 'd_logprobs',
      });
    }
    const { parts } = decodeBatched(req.dLogprobs, 'd_logprobs');
    const packed = packGradients(pending.batch, parts);
    await this.host.exclusive(() =>
      this.host.backward(pending.batch.sequences, this.adapter, pending.owner, packed),
    );
    this.pending = null;
    this.counter.add(parts);
    return {
      numLossTokens: BigInt(countLossTokens(parts)),
      numSequences: BigInt(countLossSequences(parts)),
    };
  }

  private async backwardEmbedding(
    req: BackwardRequest,
    pending: Extract<PendingForward, { kind: 'embedding' }>,
  ): Promise<MessageInitShape<typeof BackwardResponseSchema>> {
    if (!req.dEmbeddings) {
      throw new TrainerError(
        'invalid_datum',
        req.dLogprobs
          ? `backward: the pending forward pass (seq_id ${pending.seqId}) returned embeddings; send d_embeddings, not d_logprobs`
          : 'backward: d_embeddings is missing',
        { field: 'd_embeddings' },
      );
    }
    const { parts } = decodeBatched(req.dEmbeddings, 'd_embeddings');
    const { sequences } = pending.batch;
    const packed = packEmbeddingGradients(sequences.length, pending.hidden, parts);
    await this.host.exclusive(() =>
      this.host.backwardHidden(sequences, pending.pooling, this.adapter, pending.owner, packed),
    );
    this.pending = null;
    // A datum with a non-zero d(embedding) is one sequence and the tokens it pools over.
    const weights = parts.map((g, i) => {
      let any = false;
      for (let j = 0; j < g.length; j++) if (g[j] !== 0) any = true;
      const n = pending.pooling === 'mean' ? sequences[i]!.tokens.length : 1;
      return new Float32Array(n).fill(any ? 1 : 0);
    });
    this.counter.add(weights);
    return {
      numLossTokens: BigInt(countLossTokens(weights)),
      numSequences: BigInt(countLossSequences(weights)),
    };
  }

  async optimStep(
    req: OptimStepRequest,
    allReduce?: AllReduce,
    shardedStep?: ShardedStep,
  ): Promise<MessageInitShape<typeof OptimStepResponseSchema>> {
    this.assertTrainable('optim_step');
    const a = req.adamParams;
    if (!a || a.learningRate === undefined) {
      throw new TrainerError(
        'invalid_argument',
        'optim_step: adam_params.learning_rate is required',
        {
          field: 'adam_params.learning_rate',
        },
      );
    }
    const params: AdamParams = { learningRate: a.learningRate };
    if (a.beta1 !== undefined) params.beta1 = a.beta1;
    if (a.beta2 !== undefined) params.beta2 = a.beta2;
    if (a.eps !== undefined) params.eps = a.eps;
    if (a.weightDecay !== undefined) params.weightDecay = a.weightDecay;
    if (a.gradClipNorm !== undefined) params.gradClipNorm = a.gradClipNorm;
    const parsed = adamParamsSchema.safeParse(params);
    if (!parsed.success) {
      throw new TrainerError(
        'invalid_argument',
        `optim_step: invalid adam_params: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
        { field: 'adam_params' },
      );
    }
    const mode = NORMALIZATION[req.gradAccumulationNormalization];
    if (mode === undefined) {
      throw new TrainerError(
        'invalid_argument',
        `optim_step: unknown grad_accumulation_normalization ${req.gradAccumulationNormalization}`,
        { field: 'grad_accumulation_normalization' },
      );
    }
    const dp = req.dataParallel && req.dataParallel.worldSize > 1 ? req.dataParallel : undefined;
    const noGradients = () =>
      new TrainerError(
        'no_gradients',
        dp
          ? 'optim_step: no replica of this data-parallel run accumulated gradients since the last step; call forward_backward or forward_backward_custom first'
          : 'optim_step: no gradients were accumulated since the last step; call forward_backward or forward_backward_custom first',
      );
    if (!dp && this.counter.microBatches === 0) throw noGradients();
    let counts = { tokens: this.counter.tokens, sequences: this.counter.sequences };
    if (dp) {
      if (!allReduce) {
        throw new TrainerError('internal', 'optim_step: data-parallel step without an all-reduce');
      }
      const local = {
        tokens: this.counter.tokens,
        sequences: this.counter.sequences,
        microBatches: this.counter.microBatches,
      };
      const global = await this.host.exclusive(() => allReduce(this, dp, local));
      if (global.microBatches === 0) throw noGradients();
      counts = { tokens: global.tokens, sequences: global.sequences };
    }
    const scale = gradAccumulationScale(mode, counts);
    let result: { gradNorm: number; step: number };
    try {
      result = await this.host.exclusive(async () => {
        if (dp?.shardOptimizerState) {
          if (!shardedStep) {
            throw new TrainerError('internal', 'optim_step: sharded step without a collective');
          }
          return shardedStep(this, dp, { ...parsed.data, gradScale: scale });
        }
        // the normalisation scale multiplies the accumulated gradients inside the step
        return this.host.model.optimStepAsync({ ...parsed.data, gradScale: scale });
      });
    } catch (error) {
      if (error instanceof EngineError && /not finite/.test(error.message)) {
        throw new TrainerError(
          'non_finite_gradients',
          `optim_step: ${error.message}; lower the learning rate or check the loss for overflow`,
          { cause: error },
        );
      }
      throw error;
    }
    this.counter.reset();
    this.pending = null;
    this.host.dropActivations();
    return {
      gradNorm: result.gradNorm,
      step: BigInt(result.step),
      numLossTokens: BigInt(counts.tokens),
      numSequences: BigInt(counts.sequences),
      gradScale: scale,
      metrics: {
        'grad_norm:mean': result.gradNorm,
        'learning_rate:mean': parsed.data.learningRate,
        'step:max': result.step,
      },
    };
  }

  async sample(req: SampleRequest): Promise<MessageInitShape<typeof SampleResponseSchema>> {
    const prompt = decodeInt32(req.prompt, 'prompt');
    if (prompt.length === 0) {
      throw new TrainerError('invalid_argument', 'sample: the prompt is empty', {
        field: 'prompt',
      });
    }
    for (let j = 0; j < prompt.length; j++) {
      const id = prompt[j]!;
      if (id < 0 || id >= this.limits.vocabSize) {
        throw new TrainerError(
          'out_of_vocab',
          `sample: prompt[${j}] = ${id} is outside the vocabulary [0, ${this.limits.vocabSize}) of this model`,
          { field: 'prompt' },
        );
      }
    }
    const p = req.samplingParams;
    const maxTokens = p && p.maxTokens > 0 ? p.maxTokens : 16;
    if (prompt.length + maxTokens > this.limits.maxContextLength) {
      throw new TrainerError(
        'invalid_argument',
        `sample: ${prompt.length} prompt tokens + max_tokens ${maxTokens} exceed the context of ${this.limits.maxContextLength} tokens`,
        { field: 'sampling_params.max_tokens' },
      );
    }
    for (const t of p?.stopTokens ?? []) {
      if (t < 0 || t >= this.limits.vocabSize) {
        throw new TrainerError(
          'out_of_vocab',
          `sample: stop token ${t} is outside the vocabulary`,
          {
            field: 'sampling_params.stop_tokens',
          },
        );
      }
    }
    let out: Awaited<ReturnType<EngineHost['sample']>>;
    try {
      out = await this.host.exclusive(() =>
        this.host.sample(this.adapter, prompt, {
          n: req.numSamples > 0 ? req.numSamples : 1,
          maxTokens,
          temperature: p?.temperature ?? 1,
          topK: p && p.topK > 0 ? p.topK : 0,
          topP: p?.topP ?? 1,
          seed: Number(p?.seed ?? 0n),
          stopTokens: p?.stopTokens ?? [],
          promptLogprobs: req.promptLogprobs,
        }),
      );
    } catch (error) {
      if (error instanceof EngineError) {
        throw new TrainerError('invalid_argument', error.message, { cause: error });
      }
      throw error;
    }
    return {
      sequences: out.samples.map((s) => ({
        stopReason: s.finishReason === 'stop' ? StopReason.STOP : StopReason.LENGTH,
        tokens: encodeInt32(s.tokens),
        logprobs: encodeArray(s.logprobs, 'float32'),
      })),
      ...(out.promptLogprobs
        ? {
            promptLogprobs: encodeArray(
              out.promptLogprobs.map((x) => (x === null ? Number.NaN : x)),
              'float32',
            ),
          }
        : {}),
    };
  }
}
