/**
 * A trainer's checkpoints, through src/checkpoints: resumable DCP train states (weights,
 * AdamW moments, step) and servable sampler exports (HF layout for full-parameter models,
 * PEFT adapters for LoRA), all in one object store shared by the trainers of a deployment:
 *
 *   {jobId}/checkpoints/{name}/...        DCP train state (save_state, load_state*)
 *   {jobId}/sampler/{name}-{session}/...  sampler export (save_weights_for_sampler)
 *
 * A checkpoint path is `{jobId}/{name}`; a bare name is this trainer's. Every operation holds
 * the model's engine for its whole duration (tensors are streamed from the engine as they are
 * written), and refuses what it cannot do loudly: loading optimizer state from a sampler
 * snapshot, a delta export before arc_v2 deltas are wired, an adapter into a full model.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import { CheckpointError, validateCheckpointName } from '../checkpoints/dcp/errors.js';
import { DcpCheckpoints, loadTrainState, saveTrainState } from '../checkpoints/dcp/index.js';
import {
  directorySource,
  EXPORT_MANIFEST,
  exportHfModel,
  exportPeftAdapter,
  loadAdapter,
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
import { TrainerError } from './errors.js';
import type { ModelRuntime } from './model-runtime.js';

const JOB_ID = /^[a-z][a-z0-9-]{0,61}[a-z0-9]$/;

export interface TrainerCheckpointsOptions {
  /** Object-store URL of the checkpoint root (file:///dir, s3://bucket/prefix, gs://...). */
  url: string;
  jobId: string;
  /** The base model as named (recorded in checkpoints and exports). */
  baseModel: string;
  /** The base model's directory (tokenizer and generation config pass through to exports). */
  baseDir: string;
}

/** The typed error a checkpoint-layer error stands for. */
export function checkpointErrorToTrainer(error: CheckpointError): TrainerError {
  const code =
    error.code === 'not_found'
      ? 'checkpoint_not_found'
      : error.code === 'already_exists'
        ? 'checkpoint_exists'
        : error.code === 'corrupt'
          ? 'checkpoint_corrupt'
          : error.code === 'incompatible'
            ? 'checkpoint_incompatible'
            : 'invalid_argument';
  return new TrainerError(code, error.message, { cause: error });
}

export class TrainerCheckpoints {
  readonly url: string;
  private readonly store: ObjectStore;
  private readonly options: TrainerCheckpointsOptions;

  private constructor(store: ObjectStore, options: TrainerCheckpointsOptions) {
    this.store = store;
    this.url = options.url;
    this.options = options;
  }

  static async open(options: TrainerCheckpointsOptions): Promise<TrainerCheckpoints> {
    return new TrainerCheckpoints(await openObjectStore(options.url), options);
  }

  private dcp(jobId: string): DcpCheckpoints {
    return new DcpCheckpoints(this.store, { prefix: `${jobId}/checkpoints` });
  }

  /** (jobId, name) of a checkpoint path: `name` (this trainer) or `jobId/name`. */
  parsePath(path: string, what: string): { jobId: string; name: string } {
    const parts = path.split('/');
    const [jobId, name] = parts.length === 2 ? [parts[0]!, parts[1]!] : [this.options.jobId, path];
    if (parts.length > 2 || !JOB_ID.test(jobId)) {
      throw new TrainerError(
        'invalid_argument',
        `${what}: '${path}' is not a checkpoint path; use a checkpoint name, or {trainer_job_id}/{name} from save_state or resolve_checkpoint_path`,
        { field: 'path' },
      );
    }
    try {
      validateCheckpointName(name);
    } catch (error) {
      throw checkpointErrorToTrainer(error as CheckpointError);
    }
    return { jobId, name };
  }

  private requireTrainable(runtime: ModelRuntime, what: string): void {
    if (runtime.forwardOnly) {
      throw new TrainerError(
        'forward_only',
        `${what}: model ${runtime.id} is forward-only; checkpoints belong to the training model`,
      );
    }
  }

  async saveState(
    runtime: ModelRuntime,
    name: string,
    ttlSeconds: number,
  ): Promise<{ path: string; step: bigint }> {
    this.requireTrainable(runtime, 'save_state');
    const { jobId } = this.parsePath(name, 'save_state');
    if (name.includes('/')) {
      throw new TrainerError('invalid_argument', `save_state: '${name}' must be a plain name`, {
        field: 'name',
      });
    }
    const meta = await runtime.host.exclusive(() =>
      saveTrainState(runtime.host.model, this.dcp(jobId), name, {
        baseModel: this.options.baseModel,
        ...(ttlSeconds > 0 ? { ttlSeconds } : {}),
      }),
    );
    return { path: `${jobId}/${name}`, step: BigInt(meta.step) };
  }

  /**
   * Loads a train state. With `withOptimizer` the AdamW moments and step come back too;
   * without, the weights load and the optimizer starts fresh (zero moments, step 0).
   */
  async loadState(
    runtime: ModelRuntime,
    path: string,
    withOptimizer: boolean,
  ): Promise<{ path: string; step: bigint }> {
    const what = withOptimizer ? 'load_state_with_optimizer' : 'load_state';
    this.requireTrainable(runtime, what);
    const { jobId, name } = this.parsePath(path, what);
    const dcp = this.dcp(jobId);
    try {
      await dcp.metadata(name);
    } catch (error) {
      if (error instanceof CheckpointError && error.code === 'not_found') {
        await this.refuseSnapshot(jobId, name, path, what);
      }
      throw error;
    }
    const model = runtime.host.model;
    const loaded = await runtime.host.exclusive(async () => {
      const state = await loadTrainState(model, dcp, name);
      if (!withOptimizer) {
        for (const n of model.trainableNames()) {
          const st = model.getOptimizerState(n);
          if (st)
            model.setOptimizerState(
              n,
              new Float32Array(st.m.length),
              new Float32Array(st.v.length),
            );
        }
        model.step = 0;
      }
      runtime.resetAccumulation();
      return state;
    });
    return { path: `${jobId}/${name}`, step: BigInt(withOptimizer ? loaded.step : 0) };
  }

  /** A sampler snapshot or an HF/PEFT directory has no optimizer state: say so. */
  private async refuseSnapshot(
    jobId: string,
    name: string,
    path: string,
    what: string,
  ): Promise<void> {
    const exported = await this.store.stat(`${jobId}/sampler/${name}/${EXPORT_MANIFEST}`);
    if (exported) {
      throw new TrainerError(
        'not_resumable',
        `${what}: '${path}' is a sampler snapshot (servable weights, no optimizer state or step); resume from a save_state checkpoint, or warm-start a LoRA model from it with load_adapter`,
      );
    }
  }

  async list(): Promise<MessageInitShape<typeof CheckpointInfoSchema>[]> {
    const rows = await this.dcp(this.options.jobId).list();
    return rows.map((m) => ({
      name: m.name,
      path: `${this.options.jobId}/${m.name}`,
      checkpointKind: m.checkpointType,
      promotable: false,
      createTimeMs: BigInt(Date.parse(m.createTime)),
      sizeBytes: BigInt(m.files.reduce((n, f) => n + f.size, 0)),
      step: BigInt(m.step),
    }));
  }

  async resolve(checkpointName: string, sourceJobId: string): Promise<string> {
    const jobId = sourceJobId || this.options.jobId;
    const { name } = this.parsePath(`${jobId}/${checkpointName}`, 'resolve_checkpoint_path');
    await this.dcp(jobId).metadata(name);
    return `${jobId}/${name}`;
  }

  async saveForSampler(
    runtime: ModelRuntime,
    name: string,
    type: CheckpointType,
    ttlSeconds: number,
  ): Promise<MessageInitShape<typeof SaveWeightsForSamplerResponseSchema>> {
    this.requireTrainable(runtime, 'save_weights_for_sampler');
    if (type === CheckpointType.DELTA) {
      throw new TrainerError(
        'not_implemented',
        "save_weights_for_sampler: checkpoint_type 'delta' needs arc_v2 deltas (src/checkpoints/deltas), which are not wired into the trainer yet; save 'base'",
      );
    }
    const suffix = runtime.sessionId.replace(/^session-/, '');
    const snapshot = `${name}-${suffix}`;
    this.parsePath(snapshot, 'save_weights_for_sampler');
    const prefix = `${this.options.jobId}/sampler/${snapshot}`;
    const target = { store: this.store, prefix };
    const model = runtime.host.model;
    const commit = { baseModel: this.options.baseModel, ...(ttlSeconds > 0 ? { ttlSeconds } : {}) };
    await runtime.host.exclusive(() =>
      runtime.host.isLora
        ? exportPeftAdapter(model, target, {
            ...commit,
            baseModelNameOrPath: this.options.baseModel,
          })
        : exportHfModel(model, target, { ...commit, baseModelDir: this.options.baseDir }),
    );
    return {
      path: snapshot,
      checkpointType: CheckpointType.BASE,
      uri: `${this.store.url}/${prefix}`,
    };
  }

  /**
   * Loads a PEFT adapter: a local directory (or file:// URL), or the name of a LoRA sampler
   * snapshot of this trainer.
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
      : adapterPath.includes('/') || adapterPath.startsWith('.')
        ? directorySource(adapterPath)
        : storeSource(this.store, `${this.options.jobId}/sampler/${adapterPath}`);
    await runtime.host.exclusive(async () => {
      await loadAdapter(runtime.host.model, source);
      runtime.resetAccumulation();
    });
  }
}
