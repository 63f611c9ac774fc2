/**
 * A trainer pod's state: its base model, sessions, models and their operation queues, and
 * the activity clock the inactivity timeout reads. Transport-free: the gRPC server
 * (server.ts) maps each RPC to one method here.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import { catalogModelDir } from '../catalog/bundled.js';
import { readSafetensors, type TensorMap } from '../checkpoints/safetensors.js';
import { type ModelConfig, readHfConfig } from '../engine/config.js';
import {
  DEFAULT_LORA_TARGETS,
  LORA_TARGETS,
  type LoraOptions,
  type LoraTarget,
} from '../engine/model.js';
import { listWeightFiles } from '../engine/weights-files.js';
import {
  type CreateModelRequest,
  type CreateModelResponseSchema,
  type CreateSessionRequest,
  type DataParallel,
  type HealthResponseSchema,
  type JoinCollectiveRequest,
  type JoinCollectiveResponseSchema,
  type LoraConfig,
  type SaveStateRequest,
  ServingStatus,
} from '../gen/temper/trainer/v1/trainer_pb.js';
import { TrainerCheckpoints } from './checkpoints.js';
import { createTrainerClient, type TrainerClient } from './client.js';
import { DataParallelGroups, type Rendezvous, type ReplicaPlace } from './data-parallel.js';
import { EngineHost } from './engine-host.js';
import {
  type EngineSettings,
  type EngineSettingsInput,
  parseEngineSettings,
} from './engine-settings.js';
import { fromGrpcError, TrainerError } from './errors.js';
import { type AllReduce, ModelRuntime, type ShardedStep } from './model-runtime.js';
import { OpQueue } from './queue.js';

export const TRAINER_VERSION = '0.1.0';

export interface PodOptions {
  /** The base model as given: a catalog name (accounts/{a}/models/{id}) or a directory. */
  baseModel: string;
  /**
   * The model resource (accounts/{a}/models/{id}) a directory `baseModel` holds: a model
   * imported into an account. Checkpoints and exports record it as their base, so a promoted
   * adapter names its base model rather than a path on this host.
   */
  baseModelName?: string;
  /** Default LoRA rank of created models; 0 = full-parameter. */
  loraRank?: number;
  /** Default LoRA alpha (default 2 × rank). */
  loraAlpha?: number;
  /** Engine threads per model (default: all cores). */
  threads?: number;
  /** How the engine holds every model of the pod: `baseDtype` (LoRA base in bf16), `recompute`. */
  engine?: EngineSettingsInput;
  /** Only forward-only models may be created (a reference trainer). */
  forwardOnly?: boolean;
  /** The trainer job this pod serves. */
  jobId?: string;
  /** Models the pod holds at most (default 8). */
  maxModels?: number;
  /** The address the pod listens on; data-parallel collectives bind to it too (default 127.0.0.1). */
  host?: string;
  /** How long an operation waits for a missing earlier seq_id (default 120 s). */
  seqGapTimeoutMs?: number;
  /** Object-store URL of the checkpoint root (file:///dir, s3://..., gs://...); none = checkpoints refused. */
  checkpointUrl?: string;
  /** Account of the trainer job's checkpoints (default `default`). */
  account?: string;
  /** Inactivity timeout, reported in Health (the server enforces it); 0 = disabled. */
  inactivityTimeoutMs?: number;
  logger: Logger;
  now?: () => number;
}

interface Session {
  id: string;
  createdAt: number;
  userMetadata: Record<string, string>;
  /** model_seq_id → model id, for idempotent CreateModel. */
  models: Map<number, string>;
}

interface ModelEntry {
  runtime: ModelRuntime;
  queue: OpQueue;
}

/** Resolves a base model name or directory to a directory. */
export function resolveBaseModelDir(baseModel: string): string {
  const dir = baseModel.startsWith('accounts/') ? catalogModelDir(baseModel) : resolve(baseModel);
  if (!existsSync(dir)) {
    throw new TrainerError(
      'invalid_argument',
      `base model '${baseModel}' not found (looked in ${dir})`,
    );
  }
  return dir;
}

const MLP_TARGETS: readonly LoraTarget[] = ['gate_proj', 'up_proj', 'down_proj'];

function newId(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export class TrainerPod {
  readonly baseModel: string;
  /** The model resource a directory baseModel holds (PodOptions.baseModelName). */
  readonly baseModelName: string | undefined;
  readonly baseDir: string;
  readonly config: ModelConfig;
  readonly jobId: string;
  readonly loraRank: number;
  readonly forwardOnly: boolean;
  readonly inactivityTimeoutMs: number;
  /** The engine settings every model of this pod is built with. */
  readonly engine: EngineSettings;
  private readonly base: TensorMap;
  private readonly options: PodOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly startedAt: number;
  private lastActivity: number;
  private inFlight = 0;
  private draining: TrainerError | null = null;
  private readonly sessions = new Map<string, Session>();
  private readonly models = new Map<string, ModelEntry>();
  /** Models dropped by unload_model (a repeat succeeds; an operation on one says so). */
  private readonly unloaded = new Set<string>();

  private readonly frozen: EngineHost;

  private constructor(
    options: PodOptions,
    dir: string,
    config: ModelConfig,
    base: TensorMap,
    frozen: EngineHost,
    engine: EngineSettings,
  ) {
    this.frozen = frozen;
    this.engine = engine;
    this.options = options;
    this.baseModel = options.baseModel;
    this.baseModelName = options.baseModelName;
    this.baseDir = dir;
    this.config = config;
    this.base = base;
    this.jobId = options.jobId ?? newId('trainer');
    this.loraRank = options.loraRank ?? 0;
    this.forwardOnly = options.forwardOnly ?? false;
    this.inactivityTimeoutMs = options.inactivityTimeoutMs ?? 0;
    this.log = options.logger;
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
    this.lastActivity = this.startedAt;
  }

  /** Reads the base model's config and weights. */
  static async load(options: PodOptions): Promise<TrainerPod> {
    const engine = parseEngineSettings(options.engine);
    const dir = resolveBaseModelDir(options.baseModel);
    const config = await readHfConfig(`${dir}/config.json`);
    const base: TensorMap = new Map();
    for (const file of await listWeightFiles(dir)) {
      for (const [name, t] of (await readSafetensors(file)).tensors) base.set(name, t);
    }
    // Building the frozen base checks the weights fit the config at startup, not at the first
    // CreateModel; forward-only models without an adapter to share all use this one engine.
    const frozen = EngineHost.frozenBase(config, base, options.threads ?? 1, engine);
    const pod = new TrainerPod(options, dir, config, base, frozen, engine);
    if (options.checkpointUrl) {
      pod.checkpointStore = await TrainerCheckpoints.open({
        url: options.checkpointUrl,
        account: options.account,
        jobId: pod.jobId,
        baseModel: pod.baseModelName ?? pod.baseModel,
        baseDir: dir,
      });
    }
    return pod;
  }

  private checkpointStore: TrainerCheckpoints | null = null;

  /** The checkpoint store, or a `no_checkpoint_store` error naming the operation. */
  checkpoints(what: string): TrainerCheckpoints {
    if (!this.checkpointStore) {
      throw new TrainerError(
        'no_checkpoint_store',
        `${what}: this trainer has no checkpoint store; start it with --checkpoint-url (file:///dir, s3://bucket/prefix or gs://bucket/prefix)`,
      );
    }
    return this.checkpointStore;
  }

  get limits(): { vocabSize: number; maxContextLength: number } {
    return { vocabSize: this.config.vocabSize, maxContextLength: this.config.maxPositions };
  }

  /** Milliseconds since the last tracked activity (0 while an operation runs). */
  idleMs(): number {
    return this.inFlight > 0 ? 0 : Math.max(0, this.now() - this.lastActivity);
  }

  touch(): void {
    this.lastActivity = this.now();
  }

  get isDraining(): boolean {
    return this.draining !== null;
  }

  health(): MessageInitShape<typeof HealthResponseSchema> {
    return {
      status: this.draining ? ServingStatus.DRAINING : ServingStatus.SERVING,
      version: TRAINER_VERSION,
      uptimeMs: BigInt(this.now() - this.startedAt),
      trainerJobId: this.jobId,
      baseModel: this.baseModel,
      loraRank: this.loraRank,
      forwardOnly: this.forwardOnly,
      modelCount: this.models.size,
      sessionCount: this.sessions.size,
      idleMs: BigInt(this.idleMs()),
      inactivityTimeoutMs: BigInt(this.inactivityTimeoutMs),
      pid: process.pid,
      maxContextLength: this.config.maxPositions,
      vocabSize: this.config.vocabSize,
    };
  }

  private assertOpen(what: string): void {
    if (this.draining) {
      throw new TrainerError('shutting_down', `${what}: ${this.draining.message}`);
    }
  }

  createSession(req: CreateSessionRequest): string {
    this.assertOpen('create_session');
    this.touch();
    const id = newId('session');
    this.sessions.set(id, {
      id,
      createdAt: this.now(),
      userMetadata: { ...req.userMetadata },
      models: new Map(),
    });
    this.log.info({ sessionId: id, tags: req.tags }, 'session created');
    return id;
  }

  private session(id: string, what: string): Session {
    const s = this.sessions.get(id);
    if (!s) {
      throw new TrainerError(
        'unknown_session',
        `${what}: session '${id}' does not exist on trainer ${this.jobId}; create one with create_session`,
        { field: 'session_id' },
      );
    }
    return s;
  }

  heartbeat(sessionId: string): void {
    this.session(sessionId, 'heartbeat');
    this.touch();
  }

  private sameBase(name: string): boolean {
    if (name === '' || name === this.baseModel || name === this.baseModelName) return true;
    try {
      return resolveBaseModelDir(name) === this.baseDir;
    } catch {
      return false;
    }
  }

  private loraOptions(lora: LoraConfig | undefined): LoraOptions | undefined {
    const rank = lora ? lora.rank : this.loraRank;
    if (rank < 0) {
      throw new TrainerError('invalid_argument', `lora.rank must be >= 0, got ${rank}`, {
        field: 'lora.rank',
      });
    }
    if (rank === 0) return undefined;
    const alpha = lora && lora.alpha > 0 ? lora.alpha : (this.options.loraAlpha ?? 2 * rank);
    let targets: LoraTarget[];
    if (lora && lora.targets.length > 0) {
      for (const t of lora.targets) {
        if (!(LORA_TARGETS as readonly string[]).includes(t)) {
          throw new TrainerError(
            'invalid_argument',
            `lora.targets: unknown module '${t}'; use ${LORA_TARGETS.join(', ')}`,
            { field: 'lora.targets' },
          );
        }
      }
      targets = [...new Set(lora.targets as LoraTarget[])];
    } else {
      const attn = lora?.trainAttn ?? true;
      const mlp = lora?.trainMlp ?? true;
      targets = DEFAULT_LORA_TARGETS.filter((t) => (MLP_TARGETS.includes(t) ? mlp : attn));
    }
    // With tied embeddings the unembedding is the embedding matrix, which takes no adapter.
    // Tinker clients send train_unembed=true by default, so on such a model it adapts
    // everything else instead of refusing every default LoRA request (an explicit lm_head
    // target is still refused).
    if (lora?.trainUnembed && !this.config.tieWordEmbeddings && !targets.includes('lm_head'))
      targets.push('lm_head');
    if (targets.length === 0) {
      throw new TrainerError(
        'invalid_argument',
        'lora: no module to adapt (train_attn and train_mlp are both false)',
        {
          field: 'lora',
        },
      );
    }
    return { rank, alpha, targets, seed: Number(lora?.seed ?? 0n) };
  }

  createModel(req: CreateModelRequest): MessageInitShape<typeof CreateModelResponseSchema> {
    this.assertOpen('create_model');
    const session = this.session(req.sessionId, 'create_model');
    this.touch();
    if (req.modelSeqId > 0) {
      const existing = session.models.get(req.modelSeqId);
      if (existing && this.models.has(existing)) {
        const entry = this.models.get(existing)!;
        return { modelId: existing, info: entry.runtime.info(entry.queue.nextSeqId) };
      }
    }
    if (!this.sameBase(req.baseModel)) {
      throw new TrainerError(
        'invalid_argument',
        `create_model: this trainer serves base model '${this.baseModel}', not '${req.baseModel}'`,
        { field: 'base_model' },
      );
    }
    if (this.forwardOnly && !req.forwardOnly) {
      throw new TrainerError(
        'forward_only',
        'create_model: this trainer was started forward-only (a reference trainer); create the model with forward_only',
      );
    }
    const maxModels = this.options.maxModels ?? 8;
    if (this.models.size >= maxModels) {
      throw new TrainerError(
        'too_many_models',
        `create_model: this trainer already holds ${this.models.size} models (the limit is ${maxModels})`,
      );
    }
    const threads = this.options.threads ?? 1;
    const id = newId('model');
    let host: EngineHost;
    let adapter: boolean;
    let sharesBaseWith: string | undefined;
    if (req.forwardOnly) {
      const shared = req.shareBaseWithModelId
        ? this.models.get(req.shareBaseWithModelId)
        : undefined;
      if (req.shareBaseWithModelId && !shared) {
        throw new TrainerError(
          'unknown_model',
          `create_model: share_base_with_model_id '${req.shareBaseWithModelId}' is not a model on this trainer`,
          { field: 'share_base_with_model_id' },
        );
      }
      if (shared?.runtime.host.isLora) {
        host = shared.runtime.host;
        sharesBaseWith = shared.runtime.id;
      } else {
        host = this.frozen;
      }
      adapter = false;
    } else {
      const lora = this.loraOptions(req.lora);
      host = EngineHost.trainable(this.config, this.base, { threads, lora, engine: this.engine });
      adapter = true;
    }
    const runtime = new ModelRuntime({
      id,
      sessionId: session.id,
      baseModel: this.baseModel,
      host,
      adapter,
      forwardOnly: req.forwardOnly,
      limits: this.limits,
      sharesBaseWith,
    });
    const queue = new OpQueue({ name: `model ${id}`, gapTimeoutMs: this.options.seqGapTimeoutMs });
    this.models.set(id, { runtime, queue });
    if (req.modelSeqId > 0) session.models.set(req.modelSeqId, id);
    const info = runtime.info(queue.nextSeqId);
    this.log.info(
      {
        modelId: id,
        sessionId: session.id,
        loraRank: info.loraRank,
        forwardOnly: req.forwardOnly,
        sharesBaseWith,
      },
      'model created',
    );
    return { modelId: id, info };
  }

  private entry(modelId: string, what: string): ModelEntry {
    const e = this.models.get(modelId);
    if (!e && this.unloaded.has(modelId))
      throw new TrainerError(
        'unknown_model',
        `${what}: model '${modelId}' was unloaded (unload_model); create a new model`,
        { field: 'model_id' },
      );
    if (!e) {
      throw new TrainerError(
        'unknown_model',
        `${what}: model '${modelId}' does not exist on trainer ${this.jobId}; create it with create_model`,
        { field: 'model_id' },
      );
    }
    return e;
  }

  /**
   * unload_model: the model's running operation finishes, and those not yet run (and any
   * later) fail with unknown_model; then it is dropped, its slot free (a forward-only model
   * sharing its engine keeps that engine). A repeat succeeds. The SDK sends it once its own
   * accepted operations have finished.
   */
  async unloadModel(modelId: string): Promise<void> {
    this.touch();
    if (this.unloaded.has(modelId)) return;
    const e = this.entry(modelId, 'unload_model');
    this.models.delete(modelId);
    this.unloaded.add(modelId);
    // Its collective group (and, as a root, its epoch) and optimizer shard go with it.
    this.groups?.forget(modelId);
    e.queue.close(
      new TrainerError(
        'unknown_model',
        `model '${modelId}' was unloaded (unload_model); create a new model`,
        { field: 'model_id' },
      ),
    );
    await e.queue.idle();
    this.log.info({ modelId }, 'model unloaded');
  }

  info(modelId: string): ReturnType<ModelRuntime['info']> {
    const e = this.entry(modelId, 'get_info');
    return e.runtime.info(e.queue.nextSeqId);
  }

  /**
   * Runs operation (modelId, seqId) of kind `kind` in the model's order. `fn` gets the
   * model's runtime; its result (or error) is what every submission of this seq_id gets.
   */
  async op<T>(
    modelId: string,
    seqId: number,
    kind: string,
    fn: (runtime: ModelRuntime) => T | Promise<T>,
  ): Promise<T> {
    const entry = this.entry(modelId, kind);
    this.touch();
    const started = { at: 0 };
    try {
      return await entry.queue.submit(seqId, kind, () => {
        this.assertOpen(kind);
        this.inFlight++;
        started.at = this.now();
        const done = () => {
          this.inFlight--;
          this.touch();
          this.log.debug(
            { modelId, seqId, kind, ms: this.now() - started.at },
            'operation finished',
          );
        };
        try {
          const out = fn(entry.runtime);
          if (out instanceof Promise) return out.finally(done);
          done();
          return out;
        } catch (error) {
          done();
          throw error;
        }
      });
    } finally {
      this.touch();
    }
  }

  /** Stops taking operations: waiting ones fail with `shutting_down`; running ones finish. */
  drain(reason: string): void {
    if (this.draining) return;
    this.draining = new TrainerError(
      'shutting_down',
      `trainer ${this.jobId} is shutting down (${reason})`,
    );
    for (const { queue } of this.models.values()) queue.close(this.draining);
    this.groups?.close(this.draining);
    for (const client of this.peers.values()) client.close();
    this.peers.clear();
  }

  // ---- data parallelism (see data-parallel.ts) ----

  /** Clients of root replicas (JoinCollective), by address. */
  private readonly peers = new Map<string, TrainerClient>();
  /** This pod's collective groups and, as a root, its rendezvous store. */
  private groups: DataParallelGroups | undefined;

  private dataParallel(): DataParallelGroups {
    this.groups ??= new DataParallelGroups({
      host: this.options.host ?? '127.0.0.1',
      timeoutMs: this.options.seqGapTimeoutMs ?? 120_000,
      askRoot: (place) => this.askRoot(place),
      onJoined: (modelId, g) =>
        this.log.info(
          { modelId, rank: g.rank, world: g.world, transport: g.transport },
          'collective group joined',
        ),
    });
    return this.groups;
  }

  /** A rank > 0 asks the root replica's pod where to join (the JoinCollective RPC). */
  private async askRoot(place: ReplicaPlace): Promise<Rendezvous> {
    // Keyed by address and token: a new pod on a reused port has a new token.
    const peer = `${place.rootAddress}|${place.rootToken}`;
    let client = this.peers.get(peer);
    if (!client) {
      client = createTrainerClient(place.rootAddress, place.rootToken ?? '');
      this.peers.set(peer, client);
    }
    try {
      const res = await client.joinCollective(
        { modelId: place.rootModelId, rank: place.rank, worldSize: place.worldSize },
        { timeoutMs: this.options.seqGapTimeoutMs ?? 120_000 },
      );
      return { storePort: res.storePort, prefix: res.prefix };
    } catch (error) {
      throw fromGrpcError(
        error,
        `joining the collective group of the root replica at ${place.rootAddress}`,
      );
    }
  }

  /** optim_step's exchange: counts and gradients summed over the ranks, gradients in place. */
  readonly allReduce: AllReduce = (runtime, dp, local) =>
    this.dataParallel().allReduce(runtime.id, runtime.host.model, dp, local);

  /** optim_step of a replica with sharded optimizer state (ZeRO-1). */
  readonly shardedStep: ShardedStep = (runtime, dp, params) =>
    this.dataParallel().shardedStep(runtime.id, runtime.host.model, dp, params);

  /**
   * SaveState. A replica with sharded optimizer state takes part in a collective save, DCP
   * style: every replica writes its own file (its shard of the moments and its range of the
   * weights) into the root's checkpoint, the root commits them all and answers with the path,
   * the others with an empty one. The files tile every tensor, so any world size, sharded or
   * not, loads the checkpoint (a sharded rank reads only its part of the moments).
   */
  async saveState(
    runtime: ModelRuntime,
    req: SaveStateRequest,
  ): Promise<{ path: string; step: bigint }> {
    const dp = req.dataParallel;
    const groups = this.dataParallel();
    if (!dp?.shardOptimizerState || dp.worldSize < 2) {
      if (groups.sharded(runtime.id)) {
        throw new TrainerError(
          'invalid_argument',
          'save_state: this replica holds only its shard of the optimizer state; send save_state to every replica with data_parallel.shard_optimizer_state',
          { field: 'data_parallel' },
        );
      }
      return this.checkpoints('save_state').saveState(runtime, req.name, Number(req.ttlSeconds));
    }
    const model = runtime.host.model;
    const ckpts = this.checkpoints('save_state');
    const saved = await runtime.host.exclusive(() =>
      groups.shardedSave(runtime.id, model, dp, {
        target: () => ckpts.shardedSaveTarget(runtime, req.name),
        write: (target, shard) =>
          ckpts.writeStateShard(runtime, target, {
            rank: dp.rank,
            worldSize: dp.worldSize,
            shard,
          }),
        commit: (target, shards) =>
          ckpts.commitShardedState(runtime, target, shards, Number(req.ttlSeconds)),
      }),
    );
    return saved ?? { path: '', step: BigInt(model.step) };
  }

  /**
   * LoadState / LoadStateWithOptimizer; a replica with sharded optimizer state then keeps its
   * shard of the loaded moments for its world size (resharding the saved ones).
   */
  async loadState(
    runtime: ModelRuntime,
    path: string,
    withOptimizer: boolean,
    dp?: DataParallel,
  ): Promise<{ path: string; step: bigint }> {
    const what = withOptimizer ? 'load_state_with_optimizer' : 'load_state';
    const place = dp?.shardOptimizerState && dp.worldSize > 1 ? dp : undefined;
    const groups = this.dataParallel();
    // A sharded rank reads only its part of the moments, from whichever files hold it.
    const extent = place
      ? groups.momentExtent(runtime.host.model, place.rank, place.worldSize)
      : undefined;
    const res = await this.checkpoints(what).loadState(runtime, path, withOptimizer, extent);
    await runtime.host.exclusive(async () => {
      if (place && res.shard) groups.adopt(runtime.id, place, res.shard);
      else groups.afterLoad(runtime.id, runtime.host.model, place);
    });
    return { path: res.path, step: res.step };
  }

  /** The JoinCollective RPC: a rank > 0 asks where to join the group of root model `modelId`. */
  joinCollective(
    req: JoinCollectiveRequest,
  ): MessageInitShape<typeof JoinCollectiveResponseSchema> {
    this.assertOpen('join_collective');
    const entry = this.entry(req.modelId, 'join_collective');
    if (entry.runtime.forwardOnly) {
      throw new TrainerError('forward_only', 'join_collective: the root model is forward-only');
    }
    this.touch();
    return this.dataParallel().join(req.modelId, req.rank, req.worldSize);
  }

  /** Resolves once no operation runs on any model. */
  async idle(): Promise<void> {
    await Promise.all([...this.models.values()].map((m) => m.queue.idle()));
  }
}
