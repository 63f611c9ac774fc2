/**
 * One engine instance on a pod and who may use it. Engine work runs on the engine's worker
 * thread (the *Async calls), so the pod keeps answering health checks and heartbeats while a
 * step runs. A LoRA policy and its base reference share
 * one engine (the reference runs with the adapter disabled), so every operation states the
 * adapter setting it needs, and the engine remembers whose forward pass its saved activations
 * belong to: a custom loss's backward pass recomputes its forward when another forward ran
 * in between.
 */
import type { TensorMap } from '../checkpoints/safetensors.js';
import type { ModelConfig } from '../engine/config.js';
import {
  EngineError,
  type EngineOptions,
  type LoraOptions,
  type Sequence,
  type TokenSequence,
  TransformerModel,
} from '../engine/model.js';
import type { Pooling } from '../engine/native.js';
import { TrainerError } from './errors.js';

/** LoRA settings that make a frozen model: a rank-1 adapter kept disabled, so no base tensor is trainable. */
const FROZEN_LORA: LoraOptions = { rank: 1, alpha: 1, targets: ['o_proj'], seed: 0 };

export class EngineHost {
  readonly model: TransformerModel;
  /** True when the engine is a frozen copy whose adapter is never enabled. */
  readonly frozen: boolean;
  /** Owner token of the activations saved by the last forward({saveForBackward: true}). */
  private activationsOwner: object | null = null;

  private constructor(model: TransformerModel, frozen: boolean) {
    this.model = model;
    this.frozen = frozen;
  }

  /** A trainable engine (full-parameter, or LoRA with `lora`) loaded with the base weights. */
  static trainable(
    config: ModelConfig,
    base: TensorMap,
    options: { threads: number; lora?: LoraOptions; engine?: EngineOptions },
  ): EngineHost {
    return new EngineHost(
      build(config, base, options.threads, options.lora, options.engine),
      false,
    );
  }

  /**
   * A frozen copy of the base weights (forward and sample only). Kept in bf16 when the pod's
   * engine settings say so (it is a LoRA model underneath, so that is always allowed).
   */
  static frozenBase(
    config: ModelConfig,
    base: TensorMap,
    threads: number,
    engine?: EngineOptions,
  ): EngineHost {
    const host = new EngineHost(build(config, base, threads, FROZEN_LORA, engine), true);
    host.model.setAdapterEnabled(false);
    return host;
  }

  get isLora(): boolean {
    return !this.frozen && this.model.lora !== null;
  }

  /**
   * Runs `fn` with the engine to itself: operations of models sharing this engine never
   * interleave (a policy's forward and backward are not split by its reference's forward).
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private queue: Promise<void> = Promise.resolve();

  private setAdapter(on: boolean): void {
    if (this.model.lora) this.model.setAdapterEnabled(on && !this.frozen);
  }

  /** Per-target logprobs without keeping activations (on the engine's worker thread). */
  forward(sequences: Sequence[], adapter: boolean): Promise<Float32Array> {
    this.setAdapter(adapter);
    this.activationsOwner = null;
    return this.model.forwardAsync(sequences, { saveForBackward: false });
  }

  /** Forward pass keeping activations for a later backward by `owner`. */
  async forwardForBackward(
    sequences: Sequence[],
    adapter: boolean,
    owner: object,
  ): Promise<Float32Array> {
    this.setAdapter(adapter);
    this.activationsOwner = null;
    const out = await this.model.forwardAsync(sequences, { saveForBackward: true });
    this.activationsOwner = owner;
    return out;
  }

  /**
   * Back-propagates `dlogprob` through `owner`'s forward pass of `sequences`, recomputing
   * that forward first when the engine's saved activations belong to someone else.
   */
  async backward(
    sequences: Sequence[],
    adapter: boolean,
    owner: object,
    dlogprob: Float32Array,
  ): Promise<void> {
    if (this.activationsOwner !== owner) await this.forwardForBackward(sequences, adapter, owner);
    else this.setAdapter(adapter);
    await this.model.backwardAsync(dlogprob);
  }

  /**
   * Pooled final hidden states ([sequences × hidden] row-major) keeping activations for a
   * later backwardHidden by `owner`. Hidden-state and logprob activations are told apart, so a
   * backward of one kind never runs on the other's saved pass.
   */
  async forwardHiddenForBackward(
    sequences: TokenSequence[],
    pooling: Pooling,
    adapter: boolean,
    owner: object,
  ): Promise<Float32Array> {
    this.setAdapter(adapter);
    this.activationsOwner = null;
    const out = await this.model.forwardHiddenAsync(sequences, { pooling, saveForBackward: true });
    this.activationsOwner = hiddenOwner(owner);
    return out;
  }

  /**
   * Back-propagates d(loss)/d(pooled hidden) through `owner`'s forwardHiddenForBackward of
   * `sequences`, recomputing that forward first when the saved activations are someone else's.
   */
  async backwardHidden(
    sequences: TokenSequence[],
    pooling: Pooling,
    adapter: boolean,
    owner: object,
    dpooled: Float32Array,
  ): Promise<void> {
    if (this.activationsOwner !== hiddenOwner(owner)) {
      await this.forwardHiddenForBackward(sequences, pooling, adapter, owner);
    } else this.setAdapter(adapter);
    await this.model.backwardHiddenAsync(dpooled);
  }

  /** Forgets saved activations (after a step the weights they came from are gone). */
  dropActivations(): void {
    this.activationsOwner = null;
  }

  sample(
    adapter: boolean,
    ...args: Parameters<TransformerModel['sampleAsync']>
  ): ReturnType<TransformerModel['sampleAsync']> {
    this.setAdapter(adapter);
    this.activationsOwner = null;
    return this.model.sampleAsync(...args);
  }
}

const HIDDEN_OWNERS = new WeakMap<object, object>();

/** The owner token of `owner`'s hidden-state forward (distinct from its logprob forward). */
function hiddenOwner(owner: object): object {
  let token = HIDDEN_OWNERS.get(owner);
  if (!token) {
    token = {};
    HIDDEN_OWNERS.set(owner, token);
  }
  return token;
}

function build(
  config: ModelConfig,
  base: TensorMap,
  threads: number,
  lora: LoraOptions | undefined,
  engine: EngineOptions | undefined,
): TransformerModel {
  try {
    const model = new TransformerModel(config, { threads, lora, ...engine });
    model.loadTensors(base, { partial: true, source: 'base model' });
    return model;
  } catch (error) {
    if (error instanceof EngineError) {
      throw new TrainerError('invalid_argument', `cannot create the model: ${error.message}`, {
        cause: error,
      });
    }
    throw error;
  }
}
