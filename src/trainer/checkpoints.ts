/**
 * A trainer's checkpoints, through src/checkpoints, in the catalog's layout of one object
 * store shared by every trainer of a deployment:
 *
 *   accounts/{account}/rlorTrainerJobs/{job}/checkpoints/{checkpoint}/...
 *
 * where a checkpoint folder holds a DCP train state (save_state: weights, AdamW moments,
 * step), a sampler export (save_weights_for_sampler: HF layout, or a PEFT adapter for LoRA),
 * or an arc_v2 delta snapshot against the model's last base export. The catalog lists them
 * (list_checkpoints), promotion turns promotable ones into models — both read the same blobs,
 * with or without a running trainer.
 *
 * Checkpoint paths are full resource names (accounts/{a}/rlorTrainerJobs/{job}/checkpoints/
 * {id}); a bare id means this trainer's. Every operation holds the model's engine for its
 * whole duration (tensors stream from the engine as they are written), and what it cannot do
 * it refuses loudly: optimizer state from a sampler snapshot, an adapter into a full model.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import {
  CheckpointCatalog,
  type CheckpointName,
  checkpointPrefix,
  checkpointsPrefix,
  formatCheckpointName,
  parseCheckpointName,
} from '../checkpoints/catalog/index.js';
import { CheckpointError, validateCheckpointName } from '../checkpoints/dcp/errors.js';
import {
  commitTrainState,
  DcpCheckpoints,
  type DcpShardResult,
  loadTrainState,
  METADATA_FILE,
  type MomentShard,
  saveTrainState,
  writeTrainStateShard,
} from '../checkpoints/dcp/index.js';
import { memorySnapshot, storeSnapshot, writeDeltaSnapshot } from '../checkpoints/deltas/index.js';
import {
  directorySource,
  exportHfModel,
  exportPeftAdapter,
  hfModelFiles,
  loadAdapter,
  modelWeights,
  storeSource,
} from '../checkpoints/exports/index.js';
import {
  fileUrlToRoot,
  type ObjectStore,
  openObjectStore,
} from '../checkpoints/object-store/index.js';
import {
  type CheckpointInfoSchema,
  CheckpointType,
  type SaveWeightsForSamplerResponseSchema,
} from '../gen/temper/trainer/v1/trainer_pb.js';
import { checkpointErrorToTrainer, TrainerError } from './errors.js';
import type { ModelRuntime } from './model-runtime.js';

/** Account of checkpoints when none is configured. */
export const DEFAULT_ACCOUNT = 'default';

export interface TrainerCheckpointsOptions {
  /** Object-store URL of the checkpoint root (file:///dir, s3://bucket/prefix, gs://...). */
  url: string;
  /** Account the trainer job belongs to (default `default`). */
  account?: string;
  jobId: string;
  /** The base model as named (recorded in checkpoints and exports). */
  baseModel: string;
  /** The base model's directory (tokenizer and generation config pass through to exports). */
  baseDir: string;
}

function wrap<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof CheckpointError) throw checkpointErrorToTrainer(error);
    throw error;
  }
}

/** Where a sharded save goes: a checkpoint of (account, job) and the files' attempt folder. */
export interface ShardedSaveTarget {
  account: string;
  job: string;
  id: string;
  attempt: string;
}

interface BaseExport {
  identity: string;
  prefix: string;
}

export class TrainerCheckpoints {
  readonly url: string;
  readonly account: string;
  private readonly store: ObjectStore;
  private readonly options: TrainerCheckpointsOptions;
  /** The last base sampler export of each model: what its deltas are taken against. */
  private readonly lastBase = new Map<string, BaseExport>();

  private constructor(store: ObjectStore, options: TrainerCheckpointsOptions) {
    this.store = store;
    this.url = options.url;
    this.account = options.account ?? DEFAULT_ACCOUNT;
    this.options = options;
    // Fail at startup on an account or job id the catalog would refuse.
    wrap(() => checkpointsPrefix(this.account, options.jobId));
  }

  static async open(options: TrainerCheckpointsOptions): Promise<TrainerCheckpoints> {
    return new TrainerCheckpoints(await openObjectStore(options.url), options);
  }

  /** `accounts/{a}/rlorTrainerJobs/{job}`: the parent of this trainer's checkpoints. */
  get parent(): string {
    return `accounts/${this.account}/rlorTrainerJobs/${this.options.jobId}`;
  }

  private dcp(account: string, job: string): DcpCheckpoints {
    return new DcpCheckpoints(this.store, { prefix: checkpointsPrefix(account, job) });
  }

  /** The (account, job, id) of a checkpoint path: a full resource name, or a bare id of this trainer. */
  resolvePath(path: string): CheckpointName {
    return wrap(() =>
      path.includes('/')
        ? parseCheckpointName(path)
        : {
            account: this.account,
            job: this.options.jobId,
            checkpoint: validateCheckpointName(path),
          },
    );
  }

  private requireTrainable(runtime: ModelRuntime, what: string): void {
    if (runtime.forwardOnly) {
      throw new TrainerError(
        'forward_only',
        `${what}: model ${runtime.id} is forward-only; checkpoints belong to the training model`,
      );
    }
  }

  private plainName(name: string, what: string): string {
    if (name.includes('/')) {
      throw new TrainerError(
        'invalid_argument',
        `${what}: '${name}' must be a plain checkpoint id`,
        {
          field: 'name',
        },
      );
    }
    return wrap(() => validateCheckpointName(name));
  }

  async saveState(
    runtime: ModelRuntime,
    name: string,
    ttlSeconds: number,
  ): Promise<{ path: string; step: bigint }> {
    this.requireTrainable(runtime, 'save_state');
    const id = this.plainName(name, 'save_state');
    const meta = await runtime.host.exclusive(() =>
      saveTrainState(runtime.host.model, this.dcp(this.account, this.options.jobId), id, {
        baseModel: this.options.baseModel,
        ...(ttlSeconds > 0 ? { ttlSeconds } : {}),
      }),
    );
    const path = formatCheckpointName({
      account: this.account,
      job: this.options.jobId,
      checkpoint: id,
    });
    return { path, step: BigInt(meta.step) };
  }

  /**
   * A sharded save (every data-parallel rank writes its own file), step 1 at rank 0: where
   * the checkpoint goes — this trainer's checkpoints, id `name` — and the attempt folder every
   * rank writes into. Refuses a name in use before any rank writes.
   */
  async shardedSaveTarget(runtime: ModelRuntime, name: string): Promise<ShardedSaveTarget> {
    this.requireTrainable(runtime, 'save_state');
    const id = this.plainName(name, 'save_state');
    const dcp = this.dcp(this.account, this.options.jobId);
    if (await this.store.stat(dcp.key(id, METADATA_FILE)))
      throw new CheckpointError(
        'already_exists',
        `checkpoint '${id}' already exists; save under a new name or delete it first`,
      );
    return { account: this.account, job: this.options.jobId, id, attempt: dcp.beginSave() };
  }

  /** Step 2, at every rank: its file (its shard of the moments, its range of the weights). */
  writeStateShard(
    runtime: ModelRuntime,
    target: ShardedSaveTarget,
    place: { rank: number; worldSize: number; shard: MomentShard },
  ): Promise<DcpShardResult> {
    this.requireTrainable(runtime, 'save_state');
    return writeTrainStateShard(
      runtime.host.model,
      this.dcp(target.account, target.job),
      target.id,
      { attempt: target.attempt, ...place },
    );
  }

  /** Step 3, at rank 0: commits every rank's file. */
  async commitShardedState(
    runtime: ModelRuntime,
    target: ShardedSaveTarget,
    shards: DcpShardResult[],
    ttlSeconds: number,
  ): Promise<{ path: string; step: bigint }> {
    const meta = await commitTrainState(
      runtime.host.model,
      this.dcp(target.account, target.job),
      target.id,
      shards,
      {
        baseModel: this.options.baseModel,
        worldSize: shards.length,
        ...(ttlSeconds > 0 ? { ttlSeconds } : {}),
      },
    );
    const path = formatCheckpointName({
      account: target.account,
      job: target.job,
      checkpoint: target.id,
    });
    return { path, step: BigInt(meta.step) };
  }

  /**
   * Loads a train state. With `withOptimizer` the AdamW moments and step come back too;
   * without, the weights load and the optimizer starts fresh (zero moments, step 0).
   */
  async loadState(
    runtime: ModelRuntime,
    path: string,
    withOptimizer: boolean,
    /** A ZeRO-1 rank with the optimizer: read only its part of the moments (then `shard`). */
    momentShard?: { begin: number; length: number; padded: number },
  ): Promise<{ path: string; step: bigint; shard?: MomentShard }> {
    const what = withOptimizer ? 'load_state_with_optimizer' : 'load_state';
    this.requireTrainable(runtime, what);
    const n = this.resolvePath(path);
    const full = formatCheckpointName(n);
    const dcp = this.dcp(n.account, n.job);
    try {
      await dcp.metadata(n.checkpoint);
    } catch (error) {
      if (error instanceof CheckpointError && error.code === 'not_found') {
        await this.refuseSnapshot(full, what);
      }
      throw error;
    }
    const model = runtime.host.model;
    const loaded = await runtime.host.exclusive(async () => {
      const state = await loadTrainState(
        model,
        dcp,
        n.checkpoint,
        withOptimizer && momentShard ? { momentShard } : {},
      );
      if (!withOptimizer) {
        // Fresh zero moments of every trainable tensor's size (the engine's own may have been
        // released by a sharded optimizer, so their length says nothing).
        for (const t of model.trainableNames()) {
          const n = model.tensorView(t, 'grad')!.length;
          model.setOptimizerState(t, new Float32Array(n), new Float32Array(n));
        }
        model.step = 0;
      }
      runtime.resetAccumulation();
      return state;
    });
    return {
      path: full,
      step: BigInt(withOptimizer ? loaded.step : 0),
      ...(loaded.shard ? { shard: loaded.shard } : {}),
    };
  }

  /** A sampler snapshot (HF, PEFT or delta) has no optimizer state: say so. */
  private async refuseSnapshot(name: string, what: string): Promise<void> {
    let entry: Awaited<ReturnType<CheckpointCatalog['get']>>;
    try {
      entry = await new CheckpointCatalog(this.store).get(name);
    } catch {
      return;
    }
    if (!entry.resumable) {
      throw new TrainerError(
        'not_resumable',
        `${what}: ${name} is a sampler snapshot (${entry.checkpointType}: servable weights, no optimizer state or step); resume from a save_state checkpoint, or warm-start a LoRA model from it with load_adapter`,
      );
    }
  }

  /** This trainer's checkpoints (every kind), oldest first, as the catalog lists them. */
  async list(): Promise<MessageInitShape<typeof CheckpointInfoSchema>[]> {
    const catalog = new CheckpointCatalog(this.store);
    const entries = await catalog.entries(this.account, this.options.jobId);
    return entries.map((e) => ({
      name: e.name.checkpoint,
      path: formatCheckpointName(e.name),
      checkpointKind: e.checkpointType,
      promotable: e.promotable,
      resumable: e.resumable,
      createTimeMs: BigInt(e.createTime.getTime()),
    }));
  }

  /** The path of checkpoint `checkpointName` of job `sourceJobId` (same account), checked to exist. */
  async resolve(checkpointName: string, sourceJobId: string): Promise<string> {
    const job = sourceJobId || this.options.jobId;
    const name = wrap(() =>
      formatCheckpointName({
        account: this.account,
        job,
        checkpoint: validateCheckpointName(checkpointName),
      }),
    );
    const entry = await new CheckpointCatalog(this.store).get(name);
    if (!entry.resumable) {
      throw new TrainerError(
        'not_resumable',
        `resolve_checkpoint_path: ${name} is a ${entry.checkpointType} sampler snapshot, not a resumable train state`,
      );
    }
    return name;
  }

  async saveForSampler(
    runtime: ModelRuntime,
    name: string,
    requested: CheckpointType,
    ttlSeconds: number,
    exactName = false,
  ): Promise<MessageInitShape<typeof SaveWeightsForSamplerResponseSchema>> {
    this.requireTrainable(runtime, 'save_weights_for_sampler');
    const suffix = runtime.sessionId.replace(/^session-/, '');
    const identity = this.plainName(
      exactName ? name : `${name}-${suffix}`,
      'save_weights_for_sampler',
    );
    const prefix = wrap(() =>
      checkpointPrefix({ account: this.account, job: this.options.jobId, checkpoint: identity }),
    );
    const model = runtime.host.model;
    const commit = { baseModel: this.options.baseModel, ...(ttlSeconds > 0 ? { ttlSeconds } : {}) };
    const lora = runtime.host.isLora;
    const previous = this.lastBase.get(runtime.id);
    // LoRA adapters are small: always base. Full-parameter: base first, deltas after by default.
    const delta =
      !lora &&
      (requested === CheckpointType.DELTA ||
        (requested === CheckpointType.UNSPECIFIED && previous !== undefined));
    if (delta && !previous) {
      throw new TrainerError(
        'no_base_snapshot',
        "save_weights_for_sampler: a 'delta' needs an earlier 'base' sampler save of this model to be taken against; save 'base' first",
      );
    }
    const uri = `${this.store.url}/${prefix}`;
    if (lora) {
      await runtime.host.exclusive(() =>
        exportPeftAdapter(
          model,
          { store: this.store, prefix },
          {
            ...commit,
            baseModelNameOrPath: this.options.baseModel,
          },
        ),
      );
    } else if (!delta) {
      await runtime.host.exclusive(() =>
        exportHfModel(
          model,
          { store: this.store, prefix },
          {
            ...commit,
            baseModelDir: this.options.baseDir,
          },
        ),
      );
      this.lastBase.set(runtime.id, { identity, prefix });
    } else {
      // The delta is encoded straight from the engine's weights (the export's files in
      // memory, tensors as views): no full export written and read back first. The engine is
      // held until it is done, so no other model sharing it runs meanwhile, and this model's
      // next operation waits in its queue anyway.
      const base = previous!;
      await runtime.host.exclusive(async () =>
        writeDeltaSnapshot({
          previous: storeSnapshot(this.store, base.prefix),
          next: memorySnapshot(
            `${runtime.id} weights`,
            await hfModelFiles(model.config, modelWeights(model), {
              baseModelDir: this.options.baseDir,
            }),
          ),
          previousSnapshotIdentity: base.identity,
          target: { store: this.store, prefix },
          ...(ttlSeconds > 0 ? { ttlSeconds } : {}),
        }),
      );
    }
    return {
      path: identity,
      checkpointType: delta ? CheckpointType.DELTA : CheckpointType.BASE,
      uri,
      name: formatCheckpointName({
        account: this.account,
        job: this.options.jobId,
        checkpoint: identity,
      }),
      previousSnapshotIdentity: delta ? previous!.identity : '',
    };
  }

  /**
   * Loads a PEFT adapter: a local directory (or file:// URL), or a LoRA sampler snapshot
   * (its id, or full checkpoint name).
   */
  async loadAdapter(runtime: ModelRuntime, adapterPath: string): Promise<void> {
    this.requireTrainable(runtime, 'load_adapter');
    if (!runtime.host.isLora) {
      throw new TrainerError(
        'not_lora',
        `load_adapter: model ${runtime.id} is full-parameter; PEFT adapters load into LoRA models`,
      );
    }
    const source = /^file:/i.test(adapterPath)
      ? directorySource(fileUrlToRoot(adapterPath))
      : adapterPath.startsWith('accounts/') || !/[/.]/.test(adapterPath)
        ? storeSource(this.store, checkpointPrefix(this.resolvePath(adapterPath)))
        : directorySource(adapterPath);
    await runtime.host.exclusive(async () => {
      await loadAdapter(runtime.host.model, source);
      runtime.resetAccumulation();
    });
  }
}
