/**
 * ServiceClient: the Training API entry point. `ServiceClient.fromConfig({...})` is lazy —
 * the trainer (and a reference trainer when one is needed) is launched or reattached on the
 * first client call, through a Launcher (the local process launcher for now; the control
 * plane later). It hands out training, reference and base clients, keeps each pod's session
 * alive with heartbeats, and `close()` releases what it created according to the cleanup
 * options.
 */
import { randomBytes } from 'node:crypto';
import { basename, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { catalogModelDir } from '../catalog/bundled.js';
import { CheckpointCatalog, type CheckpointRow } from '../checkpoints/catalog/index.js';
import { CheckpointError } from '../checkpoints/dcp/errors.js';
import { DELTA_MANIFEST, deltaManifestSchema } from '../checkpoints/deltas/snapshot.js';
import { type ObjectStore, openObjectStore } from '../checkpoints/object-store/index.js';
import { type PromotedModel, promoteCheckpoint } from '../checkpoints/promotion.js';
import { DeploymentRegistry, type DeploymentResource } from '../deployments/registry.js';
import { type ModelInfo, ServingStatus } from '../gen/temper/trainer/v1/trainer_pb.js';
import type { TrainerClient } from '../trainer/client.js';
import { createTrainerClient } from '../trainer/client.js';
import { parseDuration } from '../trainer/duration.js';
import { checkpointErrorToTrainer, fromGrpcError, TrainerError } from '../trainer/errors.js';
import {
  type Launcher,
  LocalProcessLauncher,
  type TrainerEndpoint,
} from '../trainer/launcher/index.js';
import { ControlPlaneLauncher } from './control-plane-launcher.js';
import {
  DeploymentSampler,
  DeploymentSamplerError,
  type DeploymentSamplerOptions,
  HotLoadClient,
} from './deployment-sampler.js';
import { TrainingClient } from './training-client.js';

export const SDK_VERSION = '0.1.0';

const duration = z.union([
  z.number().nonnegative(),
  z.string().transform((s, ctx) => {
    try {
      return parseDuration(s);
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: (error as Error).message });
      return z.NEVER;
    }
  }),
]);

export const serviceConfigSchema = z.strictObject({
  /**
   * Control-plane URL and API key: trainers are then rlorTrainerJobs created through the
   * platform (ControlPlaneLauncher) instead of local processes. An explicit `launcher` option
   * wins.
   */
  apiKey: z.string().optional(),
  baseUrl: z.string().optional(),
  /** Catalog model name or HF-layout directory. */
  baseModel: z.string().min(1),
  tokenizerModel: z.string().optional(),
  /** 0 = full-parameter training. */
  loraRank: z.number().int().nonnegative().default(0),
  loraAlpha: z.number().positive().optional(),
  trainingShapeId: z.string().optional(),
  /** A separate forward-only reference trainer, even for LoRA. */
  referenceTrainingShapeId: z.string().optional(),
  /** Reattach to this trainer job instead of launching one. */
  trainerJobId: z.string().optional(),
  referenceTrainerJobId: z.string().optional(),
  /**
   * Create the inference deployment (`deploymentId`, or a generated id) through the deployment
   * registry on the first createSamplingClient / createDeploymentSampler call. False: those
   * calls need `deploymentId` to name a deployment the registry already has.
   */
  createDeployment: z.boolean().default(false),
  deploymentId: z.string().optional(),
  deploymentShape: z.string().optional(),
  /**
   * Data-parallel trainer replicas: that many pods (job ids `{id}`, `{id}-r1`, ...) serve the
   * policy; batches are sharded over them and gradients all-reduced at each optimStep
   * (src/trainer/data-parallel.ts).
   */
  trainerReplicaCount: z.number().int().positive().optional(),
  /**
   * ZeRO-1 over the replicas: each keeps only its shard of the AdamW moments (1/N of the
   * optimizer memory); same numbers as unsharded. Needs trainerReplicaCount > 1.
   */
  shardOptimizerState: z.boolean().default(false),
  /**
   * Replicas that all share one host (kernel boot and network namespace) run their
   * collectives through shared memory instead of TCP; false forces TCP. Same bits either way
   * (src/trainer/collectives.ts).
   */
  sharedMemoryCollectives: z.boolean().default(true),
  replicaCount: z.number().int().positive().default(1),
  /** Default learning rate of optimStep. */
  learningRate: z.number().positive().optional(),
  cleanupTrainerOnClose: z.boolean().default(false),
  cleanupReferenceTrainerOnClose: z.boolean().default(true),
  cleanupDeploymentOnClose: z.enum(['scale_to_zero', 'delete']).nullable().default(null),
  /** Trainer inactivity timeout: ms or a duration ('30m'); 0 / unset = 60 min. */
  inactivityTimeout: duration.optional(),
  disableInactivityCleanup: z.boolean().default(false),
  /** Engine threads per model on launched pods. */
  threads: z.number().int().positive().optional(),
  /** Session heartbeat interval (default 10 s, and at most a third of the inactivity timeout). */
  heartbeatIntervalMs: z.number().int().positive().optional(),
  /** Log level of launched pods. */
  podLogLevel: z.string().optional(),
  /** Account of the trainer jobs (checkpoint and model names). */
  account: z.string().default('default'),
  /** Checkpoint store root (default: the launcher's). */
  checkpointUrl: z.string().optional(),
});

export type ServiceConfig = z.input<typeof serviceConfigSchema>;

export interface ServiceClientOptions {
  /** Starts and stops trainer pods (default: a LocalProcessLauncher). */
  launcher?: Launcher;
  /**
   * Called with failures that happen outside a user's call (background heartbeats). Default:
   * a process warning.
   */
  onBackgroundError?: (error: TrainerError) => void;
  /**
   * Where sampling deployments live (default: an in-process registry with local replica
   * processes, owned by the service and closed with it). A registry passed here is not
   * closed; cleanupDeploymentOnClose applies to the deployment the service created on it.
   */
  deployments?: DeploymentRegistry;
}

/** createSamplingClient / createDeploymentSampler options. */
export interface SamplingClientOptions
  extends Omit<DeploymentSamplerOptions, 'inferenceUrl' | 'deployment'> {
  /**
   * The saved sampler snapshot to serve: its object-store URL (SaveSamplerResult.uri) or local
   * directory. Its parent is the deployment's hot-load bucket; a delta's chain of previous
   * snapshots (from each delta's manifest) is loaded base first.
   */
  modelPath: string;
  /** How long to wait for every replica to serve each snapshot (default 10 min). */
  timeoutMs?: number;
}

export interface CloseOptions {
  cleanupTrainerOnClose?: boolean;
  cleanupReferenceTrainerOnClose?: boolean;
}

interface Pod {
  endpoint: TrainerEndpoint;
  client: TrainerClient;
  sessionId: string;
  /** Launched by this service (cleanup applies), not reattached. */
  owned: boolean;
  maxContextLength: number;
  heartbeat: NodeJS.Timeout | undefined;
  modelSeq: number;
}

const DEFAULT_INACTIVITY_MS = 60 * 60_000;

const reconnectOptionsSchema = z.strictObject({
  timeoutS: z.number().positive().default(600),
  maxWaitForResumableS: z.number().nonnegative().default(120),
});

/** Whether a pod at `address` answers Health as serving (within 2 s). */
async function servingAt(address: string, token: string): Promise<boolean> {
  if (!address) return false;
  const client = createTrainerClient(address, token);
  try {
    const health = await client.health({}, { timeoutMs: 2_000 });
    return health.status === ServingStatus.SERVING;
  } catch {
    return false;
  } finally {
    client.close();
  }
}

function defaultLauncher(config: z.output<typeof serviceConfigSchema>): Launcher {
  if (config.baseUrl === undefined) return new LocalProcessLauncher();
  if (!config.apiKey)
    throw new TrainerError(
      'invalid_argument',
      'baseUrl needs an apiKey (the control plane requires one)',
    );
  return new ControlPlaneLauncher({
    baseUrl: config.baseUrl,
    apiKey: config.apiKey,
    account: config.account,
  });
}

export class ServiceClient {
  readonly config: z.output<typeof serviceConfigSchema>;
  private readonly launcher: Launcher;
  private readonly onBackgroundError: (error: TrainerError) => void;
  private policy: Promise<Pod> | undefined;
  private reference: Promise<Pod> | undefined;
  private policyModelId: string | undefined;
  private readonly clients = new Set<string>();
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly pods: Pod[] = [];

  private constructor(config: z.output<typeof serviceConfigSchema>, options: ServiceClientOptions) {
    this.config = config;
    this.launcher = options.launcher ?? defaultLauncher(config);
    this.deploymentRegistry = options.deployments;
    this.onBackgroundError =
      options.onBackgroundError ??
      ((error) =>
        process.emitWarning(error.message, { code: `TEMPER_${error.code.toUpperCase()}` }));
  }

  /** A lazy service: nothing is launched until the first client is created. */
  static fromConfig(config: ServiceConfig, options: ServiceClientOptions = {}): ServiceClient {
    const parsed = serviceConfigSchema.safeParse(config);
    if (!parsed.success) {
      throw new TrainerError(
        'invalid_argument',
        `invalid service config: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`,
      );
    }
    return new ServiceClient(parsed.data, options);
  }

  /** The policy trainer's job id (the configured one, or the launched one once it exists). */
  get trainerJobId(): string | undefined {
    return this.config.trainerJobId ?? this.launchedPolicyId;
  }

  /** The separate reference trainer's job id; undefined while the reference is shared. */
  get referenceTrainerJobId(): string | undefined {
    return this.config.referenceTrainerJobId ?? this.launchedReferenceId;
  }

  /** The sampling deployment's id (configured, or generated once the service created it). */
  get deploymentId(): string | undefined {
    return this.config.deploymentId ?? this.createdDeploymentId;
  }

  /** The trainer's context length; undefined before the trainer exists. */
  get maxContextLength(): number | undefined {
    return this.policyContext;
  }

  private launchedPolicyId: string | undefined;
  private launchedReferenceId: string | undefined;
  private policyContext: number | undefined;

  private assertOpen = (): void => {
    if (this.closed) {
      throw new TrainerError('client_closed', 'this ServiceClient is closed; create a new one');
    }
  };

  private inactivityMs(): number {
    if (this.config.disableInactivityCleanup) return 0;
    const t = this.config.inactivityTimeout;
    return t === undefined || t === 0 ? DEFAULT_INACTIVITY_MS : t;
  }

  private async connect(
    jobId: string | undefined,
    spec: { forwardOnly: boolean; loraRank: number; launchJobId?: string },
    revived?: { endpoint: TrainerEndpoint; owned: boolean },
  ): Promise<Pod> {
    const owned = revived ? revived.owned : jobId === undefined;
    const endpoint = revived
      ? revived.endpoint
      : jobId === undefined
        ? await this.launcher.launch({
            ...(spec.launchJobId ? { jobId: spec.launchJobId } : {}),
            baseModel: this.config.baseModel,
            loraRank: spec.loraRank,
            loraAlpha: this.config.loraAlpha,
            forwardOnly: spec.forwardOnly,
            threads: this.config.threads,
            inactivityTimeoutMs: this.inactivityMs(),
            logLevel: this.config.podLogLevel,
            account: this.config.account,
            ...(this.config.checkpointUrl ? { checkpointUrl: this.config.checkpointUrl } : {}),
          })
        : await this.launcher.attach(jobId);
    const client = createTrainerClient(endpoint.address, endpoint.token);
    const pod: Pod = {
      endpoint,
      client,
      sessionId: '',
      owned,
      maxContextLength: 0,
      heartbeat: undefined,
      modelSeq: 1,
    };
    this.pods.push(pod);
    try {
      const health = await client.health({}, { timeoutMs: 10_000 });
      pod.maxContextLength = health.maxContextLength;
      const session = await client.createSession({ sdkVersion: SDK_VERSION, tags: ['temper-sdk'] });
      pod.sessionId = session.sessionId;
      const timeout = Number(health.inactivityTimeoutMs);
      const every =
        this.config.heartbeatIntervalMs ??
        (timeout > 0 ? Math.max(50, Math.min(10_000, Math.floor(timeout / 3))) : 10_000);
      pod.heartbeat = setInterval(() => {
        client
          .heartbeat({ sessionId: pod.sessionId }, { timeoutMs: 5_000 })
          .catch((error: unknown) => {
            this.onBackgroundError(fromGrpcError(error, `heartbeat to trainer ${endpoint.jobId}`));
          });
      }, every);
      pod.heartbeat.unref();
    } catch (error) {
      throw fromGrpcError(error, `connecting to trainer ${endpoint.jobId} at ${endpoint.address}`);
    }
    return pod;
  }

  private policyPod(): Promise<Pod> {
    if (!this.policy) {
      {
        const world = this.config.trainerReplicaCount ?? 1;
        const base = this.config.trainerJobId;
        const launchId =
          base ?? (world > 1 ? `trainer-${randomBytes(4).toString('hex')}` : undefined);
        // Rank r > 0 is job `{rank 0's id}-r{r}`, launched (or reattached) with rank 0.
        const ranks = Array.from({ length: world }, (_, r) => {
          const id = r === 0 ? launchId : `${launchId}-r${r}`;
          return this.connect(base === undefined ? undefined : id, {
            forwardOnly: false,
            loraRank: this.config.loraRank,
            ...(base === undefined && id ? { launchJobId: id } : {}),
          });
        });
        this.policyRanks = ranks;
        for (const r of ranks) r.catch(() => undefined);
        this.policyReplicas = Promise.all(ranks);
        this.policyReplicas.catch(() => undefined);
        this.policy = this.policyReplicas.then((pods) => {
          const pod = pods[0]!;
          if (pod.owned) this.launchedPolicyId = pod.endpoint.jobId;
          this.policyContext = pod.maxContextLength;
          return pod;
        });
      }
    }
    return this.policy;
  }

  /**
   * After the policy trainer died (preemption, kill -9): waits for the job to be resumable,
   * resumes it (the launcher relaunches the job id with its spec; a pod that is still healthy
   * is kept), polls until it serves, reconnects and returns a new training client on the
   * fresh model — the old client is dead. The caller then restores its state with
   * `loadStateWithOptimizer(lastSaveStatePath)` and replays its data from the saved cursor.
   * With trainerReplicaCount > 1 every replica is resumed.
   *
   * `maxWaitForResumableS` (default 120): how long a job that still looks alive but does not
   * answer may take to become resumable (to be seen as stopped); `timeoutS` (default 600):
   * the whole wait. Errors: `deadline_exceeded`, `unavailable`, `unknown_trainer`.
   */
  async reconnectAndWait(
    jobId?: string,
    options: { timeoutS?: number; maxWaitForResumableS?: number } = {},
  ): Promise<TrainingClient> {
    this.assertOpen();
    const parsed = reconnectOptionsSchema.safeParse(options);
    if (!parsed.success) {
      throw new TrainerError(
        'invalid_argument',
        `reconnectAndWait: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
      );
    }
    const id = jobId ?? this.trainerJobId;
    if (!id) {
      throw new TrainerError(
        'invalid_argument',
        'reconnectAndWait: this service has no trainer job yet; pass a job id',
      );
    }
    if (this.trainerJobId !== undefined && id !== this.trainerJobId) {
      throw new TrainerError(
        'invalid_argument',
        `reconnectAndWait: '${id}' is not this service's trainer job ('${this.trainerJobId}')`,
      );
    }
    const { timeoutS, maxWaitForResumableS } = parsed.data;
    const deadline = Date.now() + timeoutS * 1000;
    const world = this.config.trainerReplicaCount ?? 1;
    const ids = Array.from({ length: world }, (_, r) => (r === 0 ? id : `${id}-r${r}`));
    // Retire the old connections (their pods are gone or about to be replaced).
    const old: Pod[] = [];
    for (const p of this.policyRanks) {
      try {
        old.push(await p);
      } catch {
        // never connected
      }
    }
    const owned = old[0]?.owned ?? this.config.trainerJobId === undefined;
    for (const pod of old) {
      if (pod.heartbeat) clearInterval(pod.heartbeat);
      pod.client.close();
      const at = this.pods.indexOf(pod);
      if (at >= 0) this.pods.splice(at, 1);
    }
    const endpoints = await Promise.all(
      ids.map((rankId) => this.revive(rankId, deadline, maxWaitForResumableS * 1000)),
    );
    this.assertOpen();
    const ranks = endpoints.map((endpoint) =>
      this.connect(
        undefined,
        { forwardOnly: false, loraRank: this.config.loraRank },
        { endpoint, owned },
      ),
    );
    this.policyRanks = ranks;
    for (const r of ranks) r.catch(() => undefined);
    this.policyReplicas = Promise.all(ranks);
    this.policyReplicas.catch(() => undefined);
    this.policy = this.policyReplicas.then((pods) => {
      const pod = pods[0]!;
      if (pod.owned) this.launchedPolicyId = pod.endpoint.jobId;
      this.policyContext = pod.maxContextLength;
      return pod;
    });
    this.clients.delete(`${this.config.baseModel}|${this.config.loraRank}`);
    this.policyModelId = undefined;
    return this.createTrainingClient();
  }

  /** One job back to serving: kept if healthy, relaunched with its spec once resumable. */
  private async revive(
    jobId: string,
    deadline: number,
    maxWaitForResumableMs: number,
  ): Promise<TrainerEndpoint> {
    const resumableBy = Math.min(deadline, Date.now() + maxWaitForResumableMs);
    for (;;) {
      const info = await this.launcher.get(jobId);
      if (!info) {
        throw new TrainerError(
          'unknown_trainer',
          `reconnectAndWait: trainer job '${jobId}' is not known to the ${this.launcher.kind} launcher`,
        );
      }
      if (info.state === 'stopped' || info.state === 'failed') {
        // Resumable: the same job id comes back with the spec it was launched with.
        const { jobId: _, ...spec } = info.spec;
        return this.launcher.launch({ ...spec, jobId });
      }
      if (info.state === 'running' && (await servingAt(info.address, info.token))) {
        return { jobId, address: info.address, token: info.token };
      }
      if (Date.now() > resumableBy) {
        throw new TrainerError(
          Date.now() > deadline ? 'deadline_exceeded' : 'unavailable',
          `reconnectAndWait: trainer job '${jobId}' is ${info.state} but does not answer, and did not become resumable within ${Math.round(maxWaitForResumableMs / 1000)} s`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Every policy replica, rank order (one without data parallelism). */
  private policyReplicas: Promise<Pod[]> | undefined;
  private policyRanks: Promise<Pod>[] = [];

  private referencePod(): Promise<Pod> {
    if (!this.reference) {
      this.reference = this.connect(this.config.referenceTrainerJobId, {
        forwardOnly: true,
        loraRank: 0,
      }).then((pod) => {
        if (pod.owned) this.launchedReferenceId = pod.endpoint.jobId;
        return pod;
      });
    }
    return this.reference;
  }

  private checkModel(
    method: string,
    baseModel: string | undefined,
    loraRank: number | undefined,
  ): void {
    if (baseModel !== undefined && baseModel !== this.config.baseModel) {
      throw new TrainerError(
        'invalid_argument',
        `${method}: baseModel '${baseModel}' does not match the service's baseModel '${this.config.baseModel}'`,
      );
    }
    if (loraRank !== undefined && loraRank !== this.config.loraRank) {
      throw new TrainerError(
        'invalid_argument',
        `${method}: loraRank ${loraRank} does not match the service's loraRank ${this.config.loraRank}`,
      );
    }
  }

  private async createModel(
    pod: Pod,
    request: {
      forwardOnly: boolean;
      lora?: { rank: number; alpha: number };
      shareBaseWithModelId?: string;
    },
    userMetadata: Record<string, string> | undefined,
    replicas: readonly Pod[] = [],
  ): Promise<TrainingClient> {
    const one = (p: Pod) => this.createModelOn(p, request, userMetadata);
    const [info, ...others] = await Promise.all([one(pod), ...replicas.map(one)]);
    return new TrainingClient({
      client: pod.client,
      info: info!,
      jobId: pod.endpoint.jobId,
      learningRate: this.config.learningRate,
      assertOpen: this.assertOpen,
      ...(replicas.length > 0
        ? {
            dataParallel: {
              rootAddress: pod.endpoint.address,
              rootToken: pod.endpoint.token,
              shardOptimizerState: this.config.shardOptimizerState,
              tcpCollectives: !this.config.sharedMemoryCollectives,
              replicas: replicas.map((p, i) => ({
                client: p.client,
                info: others[i]!,
                jobId: p.endpoint.jobId,
              })),
            },
          }
        : {}),
    });
  }

  private async createModelOn(
    pod: Pod,
    request: {
      forwardOnly: boolean;
      lora?: { rank: number; alpha: number };
      shareBaseWithModelId?: string;
    },
    userMetadata: Record<string, string> | undefined,
  ): Promise<ModelInfo> {
    const modelSeqId = pod.modelSeq++;
    let res: Awaited<ReturnType<TrainerClient['createModel']>>;
    try {
      res = await pod.client.createModel({
        sessionId: pod.sessionId,
        modelSeqId,
        baseModel: this.config.baseModel,
        forwardOnly: request.forwardOnly,
        ...(request.lora ? { lora: request.lora } : {}),
        shareBaseWithModelId: request.shareBaseWithModelId ?? '',
        userMetadata: userMetadata ?? {},
      });
    } catch (error) {
      throw fromGrpcError(error, 'create_model');
    }
    if (!res.info)
      throw new TrainerError('internal', 'create_model: the trainer sent no model info');
    return res.info;
  }

  /**
   * The training client of (baseModel, loraRank) — both must match the service's. A second
   * one on the same service is an error. `modelId` reattaches a model that already exists on
   * a reattached trainer instead of creating one.
   */
  async createTrainingClient(
    options: {
      baseModel?: string;
      loraRank?: number;
      userMetadata?: Record<string, string>;
      modelId?: string;
    } = {},
  ): Promise<TrainingClient> {
    this.assertOpen();
    this.checkModel('createTrainingClient', options.baseModel, options.loraRank);
    const key = `${this.config.baseModel}|${this.config.loraRank}`;
    if (this.clients.has(key)) {
      throw new TrainerError(
        'duplicate_client',
        `a training client for (${this.config.baseModel}, loraRank ${this.config.loraRank}) already exists on this service; create a new ServiceClient for a separate trainer`,
      );
    }
    this.clients.add(key);
    try {
      const pod = await this.policyPod();
      this.assertOpen();
      let client: TrainingClient;
      const replicas = ((await this.policyReplicas) ?? []).slice(1);
      if (options.modelId && replicas.length > 0) {
        throw new TrainerError(
          'not_implemented',
          'createTrainingClient: reattaching a model by modelId is not available with trainerReplicaCount > 1; create a new model and loadStateWithOptimizer',
        );
      }
      if (options.modelId) {
        let res: Awaited<ReturnType<TrainerClient['getInfo']>>;
        try {
          res = await pod.client.getInfo({ modelId: options.modelId });
        } catch (error) {
          throw fromGrpcError(error, 'get_info');
        }
        if (!res.info)
          throw new TrainerError('internal', 'get_info: the trainer sent no model info');
        client = new TrainingClient({
          client: pod.client,
          info: res.info,
          jobId: pod.endpoint.jobId,
          learningRate: this.config.learningRate,
          assertOpen: this.assertOpen,
        });
      } else {
        const rank = this.config.loraRank;
        client = await this.createModel(
          pod,
          {
            forwardOnly: false,
            lora: { rank, alpha: rank > 0 ? (this.config.loraAlpha ?? 2 * rank) : 0 },
          },
          options.userMetadata,
          replicas,
        );
      }
      this.policyModelId = client.modelId;
      return client;
    } catch (error) {
      this.clients.delete(key);
      throw error;
    }
  }

  /**
   * A frozen reference for KL / DPO baseline logprobs. A LoRA policy without an explicit
   * reference shape or job shares the policy trainer with the adapter disabled; otherwise a
   * separate forward-only trainer owned by this service serves it.
   */
  async createReferenceClient(
    baseModel?: string,
    loraRank = 0,
    userMetadata?: Record<string, string>,
  ): Promise<TrainingClient> {
    this.assertOpen();
    this.checkModel('createReferenceClient', baseModel, undefined);
    if (loraRank !== 0 && loraRank !== this.config.loraRank) {
      throw new TrainerError(
        'invalid_argument',
        `createReferenceClient: loraRank ${loraRank} does not match the service's loraRank ${this.config.loraRank}`,
      );
    }
    const shared =
      this.config.loraRank > 0 &&
      this.config.referenceTrainingShapeId === undefined &&
      this.config.referenceTrainerJobId === undefined;
    if (shared) return this.createBaseTrainingClient(baseModel, userMetadata);
    const pod = await this.referencePod();
    this.assertOpen();
    return this.createModel(pod, { forwardOnly: true }, userMetadata);
  }

  /**
   * A base-only client on the policy trainer (forward and sample only): the frozen base
   * weights, sharing the LoRA policy's engine with its adapter disabled when there is one.
   */
  async createBaseTrainingClient(
    baseModel?: string,
    userMetadata?: Record<string, string>,
  ): Promise<TrainingClient> {
    this.assertOpen();
    this.checkModel('createBaseTrainingClient', baseModel, undefined);
    const pod = await this.policyPod();
    this.assertOpen();
    return this.createModel(
      pod,
      { forwardOnly: true, shareBaseWithModelId: this.policyModelId },
      userMetadata,
    );
  }

  private store: Promise<ObjectStore> | undefined;

  /** The checkpoint store (read directly: listing and promotion need no running trainer). */
  private checkpointStore(): Promise<ObjectStore> {
    const url = this.config.checkpointUrl ?? this.launcher.checkpointUrl;
    if (!url) {
      return Promise.reject(
        new TrainerError(
          'no_checkpoint_store',
          'no checkpoint store: set checkpointUrl, or use a launcher that has one',
        ),
      );
    }
    this.store ??= openObjectStore(url);
    return this.store;
  }

  /**
   * Every checkpoint of a trainer job (default: this service's trainer), oldest first, with
   * its type and whether it is promotable — also after the trainer is gone.
   */
  async listCheckpoints(jobId?: string): Promise<CheckpointRow[]> {
    const job = jobId ?? this.trainerJobId;
    if (!job) {
      throw new TrainerError(
        'invalid_argument',
        'listCheckpoints: no trainer job yet; pass a job id',
      );
    }
    const store = await this.checkpointStore();
    try {
      return await new CheckpointCatalog(store).listAll(
        `accounts/${this.config.account}/rlorTrainerJobs/${job}`,
      );
    } catch (error) {
      if (error instanceof CheckpointError) throw checkpointErrorToTrainer(error);
      throw error;
    }
  }

  /**
   * Promotes a promotable sampler checkpoint (its resource name from listCheckpoints) to the
   * model accounts/{account}/models/{outputModelId}. The trainer may be in any state.
   */
  async promoteCheckpoint(args: {
    name: string;
    outputModelId: string;
    baseModel?: string;
  }): Promise<PromotedModel> {
    const store = await this.checkpointStore();
    try {
      return await promoteCheckpoint(store, args);
    } catch (error) {
      if (error instanceof CheckpointError) throw checkpointErrorToTrainer(error);
      throw error;
    }
  }

  private deploymentRegistry: DeploymentRegistry | undefined;
  private ownsRegistry = false;
  private createdDeploymentId: string | undefined;
  private deployment: Promise<DeploymentResource> | undefined;
  private deploymentBucket: string | undefined;

  /**
   * A sampler on the service's deployment serving the snapshot at `modelPath`: the snapshot is
   * hot-loaded (base first as a full snapshot, then each delta as arc_v2 against its previous;
   * snapshots the deployment already serves are skipped) and every replica serves it before
   * this resolves.
   */
  async createDeploymentSampler(options: SamplingClientOptions): Promise<DeploymentSampler> {
    this.assertOpen();
    const { modelPath, timeoutMs, ...samplerOpts } = options;
    const { bucketUrl, identity } = splitSnapshotPath(modelPath);
    this.checkBucket(bucketUrl);
    const store = await openObjectStore(bucketUrl);
    const chain = await snapshotChain(store, identity);
    const d = await this.ensureDeployment(bucketUrl);
    const model = samplerOpts.model ?? d.baseModel;
    // the caller's key where given, else the deployment's access token (this process holds
    // the registry that minted it)
    const auth = {
      apiKey:
        samplerOpts.apiKey ?? (this.deploymentRegistry as DeploymentRegistry).accessToken(d.name),
    };
    const target = { inferenceUrl: d.gatewayUrl as string, deployment: d.name, model, ...auth };
    const hl = new HotLoadClient(target);
    const served = (await hl.status()).replicas;
    // resume after the newest chain element that every replica already serves
    let from = 0;
    for (let i = chain.length - 1; i >= 0; i--)
      if (served.length > 0 && served.every((r) => r.current_snapshot_identity === chain[i])) {
        from = i + 1;
        break;
      }
    const load = async (start: number) => {
      for (let i = start; i < chain.length; i++) {
        const id = chain[i] as string;
        const prev = chain[i - 1];
        await hl.hotloadAndWait(id, prev ? { previousSnapshotIdentity: prev } : {}, timeoutMs);
      }
    };
    // Deltas are taken against the last base, which the replicas serving an earlier delta of
    // it may still hold (hot-load spec: a delta applies where the replica holds its previous
    // snapshot's weights): signal the delta alone first, and reload the chain only when a
    // replica refuses it.
    const servesOtherSnapshot = served.some((r) => r.current_snapshot_identity !== null);
    if (from === 0 && chain.length > 1 && servesOtherSnapshot) {
      try {
        await load(chain.length - 1);
        return new DeploymentSampler({ ...samplerOpts, ...target });
      } catch (error) {
        if (!(error instanceof DeploymentSamplerError)) throw error;
      }
    }
    await load(from);
    return new DeploymentSampler({ ...samplerOpts, ...target });
  }

  /** The Training API name for createDeploymentSampler. */
  createSamplingClient(options: SamplingClientOptions): Promise<DeploymentSampler> {
    return this.createDeploymentSampler(options);
  }

  /** The deployment's hot-load bucket is fixed at creation: snapshots elsewhere are refused. */
  private checkBucket(bucketUrl: string): void {
    if (this.deploymentBucket !== undefined && this.deploymentBucket !== bucketUrl)
      throw new TrainerError(
        'invalid_argument',
        `the deployment hot-loads from ${this.deploymentBucket}; ${bucketUrl} is another bucket`,
      );
  }

  private ensureDeployment(bucketUrl: string): Promise<DeploymentResource> {
    this.checkBucket(bucketUrl);
    this.deploymentBucket = bucketUrl;
    this.deployment ??= this.openDeployment(bucketUrl);
    this.deployment.catch(() => {
      this.deployment = undefined;
      this.deploymentBucket = undefined;
    });
    return this.deployment;
  }

  private async openDeployment(bucketUrl: string): Promise<DeploymentResource> {
    if (!this.deploymentRegistry) {
      // its gateways take only their access tokens, which this client holds
      this.deploymentRegistry = new DeploymentRegistry(undefined, { auth: {} });
      this.ownsRegistry = true;
    }
    const registry = this.deploymentRegistry;
    const account = this.config.account;
    const id = this.config.deploymentId;
    if (id) {
      const existing = registry.list(account).find((d) => d.name.endsWith(`/deployments/${id}`));
      if (existing) return existing;
    }
    if (!this.config.createDeployment)
      throw new TrainerError(
        'invalid_argument',
        id
          ? `deployment ${id} does not exist in account ${account}; set createDeployment: true to create it`
          : 'no sampling deployment: set deploymentId, or createDeployment: true',
      );
    const isCatalogName = /^accounts\/[a-z0-9-]+\/models\/[a-z0-9-]+$/.test(this.config.baseModel);
    const baseModelDir = isCatalogName
      ? catalogModelDir(this.config.baseModel)
      : resolve(this.config.baseModel);
    const baseModel = isCatalogName
      ? this.config.baseModel
      : `accounts/${account}/models/${basename(baseModelDir)
          .toLowerCase()
          .replace(/[^a-z0-9-]/g, '-')}`;
    const deploymentId = id ?? `sampler-${randomBytes(4).toString('hex')}`;
    const n = this.config.replicaCount;
    const d = await registry.create({
      account,
      deploymentId,
      baseModel,
      baseModelDir,
      hotLoad: { bucketUrl },
      minReplicaCount: n,
      maxReplicaCount: n,
      replica: this.config.threads ? { threads: this.config.threads } : {},
    });
    if (!id) this.createdDeploymentId = deploymentId;
    if (d.state !== 'READY' || !d.gatewayUrl)
      throw new TrainerError(
        'unavailable',
        `deployment ${d.name} is ${d.state}: ${d.status.reason ?? 'no gateway'}`,
      );
    this.createdDeployment = d.name;
    return d;
  }

  private createdDeployment: string | undefined;

  /**
   * Releases the service: stops heartbeats, closes connections, and stops the trainers it
   * launched as the cleanup options say (policy: cleanupTrainerOnClose, default false;
   * separate reference: cleanupReferenceTrainerOnClose, default true). Idempotent. Every
   * failure is reported (an AggregateError when several happen).
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (!this.closing) this.closing = this.doClose(options);
    return this.closing;
  }

  private async doClose(options: CloseOptions): Promise<void> {
    this.closed = true;
    const errors: unknown[] = [];
    const settle = async (p: Promise<Pod> | undefined): Promise<Pod | undefined> => {
      if (!p) return undefined;
      try {
        return await p;
      } catch {
        return undefined; // the failure was reported to the call that started it
      }
    };
    const policy = await settle(this.policy);
    const replicas: Pod[] = [];
    for (const r of this.policyRanks.slice(1)) {
      const pod = await settle(r);
      if (pod) replicas.push(pod);
    }
    const reference = await settle(this.reference);
    for (const pod of this.pods) {
      if (pod.heartbeat) clearInterval(pod.heartbeat);
      pod.client.close();
    }
    const stopPolicy = options.cleanupTrainerOnClose ?? this.config.cleanupTrainerOnClose;
    const stopReference =
      options.cleanupReferenceTrainerOnClose ?? this.config.cleanupReferenceTrainerOnClose;
    const stops: Promise<void>[] = [];
    if (policy?.owned && stopPolicy) stops.push(this.launcher.stop(policy.endpoint.jobId));
    for (const r of replicas)
      if (r.owned && stopPolicy) stops.push(this.launcher.stop(r.endpoint.jobId));
    if (reference?.owned && stopReference) stops.push(this.launcher.stop(reference.endpoint.jobId));
    const registry = this.deploymentRegistry;
    if (registry && this.ownsRegistry) stops.push(registry.close());
    else if (registry && this.createdDeployment) {
      const name = this.createdDeployment;
      if (this.config.cleanupDeploymentOnClose === 'delete') stops.push(registry.delete(name));
      else if (this.config.cleanupDeploymentOnClose === 'scale_to_zero')
        stops.push(registry.scaleToZero(name).then(() => undefined));
    }
    for (const r of await Promise.allSettled(stops))
      if (r.status === 'rejected') errors.push(r.reason);
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, 'closing the service failed');
  }
}

/** Bucket URL and snapshot identity of a saved sampler snapshot's URL or local directory. */
function splitSnapshotPath(modelPath: string): { bucketUrl: string; identity: string } {
  const url = modelPath.includes('://')
    ? modelPath.replace(/\/+$/, '')
    : pathToFileURL(resolve(modelPath)).href;
  const cut = url.lastIndexOf('/');
  const identity = url.slice(cut + 1);
  if (cut < 0 || !identity || url.slice(0, cut).endsWith(':/'))
    throw new TrainerError('invalid_argument', `modelPath ${modelPath}: not a snapshot location`);
  return { bucketUrl: url.slice(0, cut), identity: decodeURIComponent(identity) };
}

/** [base, delta1, ..., identity]: each delta's manifest names the snapshot it applies to. */
async function snapshotChain(store: ObjectStore, identity: string): Promise<string[]> {
  const chain = [identity];
  for (;;) {
    const head = chain[0] as string;
    const manifest = await store.get(`${head}/${DELTA_MANIFEST}`).catch(() => null);
    if (!manifest) {
      const files = await store.list(`${head}/`);
      if (files.length === 0)
        throw new TrainerError(
          'checkpoint_not_found',
          `snapshot ${head} not found in ${store.url}`,
        );
      return chain;
    }
    const m = deltaManifestSchema.safeParse(JSON.parse(manifest.toString('utf8')));
    if (!m.success)
      throw new TrainerError(
        'invalid_argument',
        `${head}/${DELTA_MANIFEST} is not a delta manifest`,
      );
    const prev = m.data.previous_snapshot_identity;
    if (chain.includes(prev) || chain.length > 1_000)
      throw new TrainerError('invalid_argument', `snapshot chain of ${identity} loops at ${prev}`);
    chain.unshift(prev);
  }
}
