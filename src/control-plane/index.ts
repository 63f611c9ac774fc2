/**
 * The control plane: the REST API over the store, the orchestrator, the artifact and
 * checkpoint stores and (optionally) the deployment registry.
 *
 *   const cp = createControlPlane({ store, orchestrator, artifacts, checkpointUrl });
 *   const url = await cp.listen(8080, '127.0.0.1');
 *   ...
 *   await cp.close(); // the app only: the injected store and registries belong to the caller
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import type { ObjectStore } from '../checkpoints/object-store/index.js';
import { openObjectStore } from '../checkpoints/object-store/index.js';
import type { ControlPlaneOptions, Deps } from './context.js';
import { deploymentGatewayRoutes } from './gateway/deployments/index.js';
import { trainerGatewayRoutes } from './gateway/trainer/index.js';
import { buildServer } from './http/server.js';
import { webAppRoutes } from './http/web-app.js';
import { accountRoutes } from './resources/accounts.js';
import { billingRoutes } from './resources/billing.js';
import { accountCheckpointRoutes } from './resources/checkpoints.js';
import { datasetRoutes } from './resources/datasets.js';
import { deployedModelRoutes } from './resources/deployed-models.js';
import {
  deploymentRoutes,
  type RestoredDeployments,
  restoreDeployments,
} from './resources/deployments.js';
import { downloadRoute } from './resources/downloads.js';
import { evalProtocolRoutes } from './resources/eval-protocol.js';
import { evaluatorRoutes, evaluatorV2Routes } from './resources/evaluators.js';
import { dpoRoutes } from './resources/jobs/dpo.js';
import { orpoRoutes } from './resources/jobs/orpo.js';
import { rftRoutes } from './resources/jobs/rft.js';
import { rlorRoutes } from './resources/jobs/rlor.js';
import { sftRoutes } from './resources/jobs/sft.js';
import { modelUploadRoute } from './resources/model-import.js';
import { modelRoutes } from './resources/models.js';
import { secretRoutes } from './resources/secrets.js';
import { trainingShapeRoutes } from './resources/training-shapes.js';

export type { UsageEvent } from '../store/index.js';
export { type BootstrapResult, bootstrapAccount } from './bootstrap.js';
export type { ControlPlaneOptions } from './context.js';
export { ApiError, type ApiStatus } from './http/errors.js';
export type { JobOrchestrator, JobRef, PromoteRequest } from './orchestrator.js';
export { BILLING_CSV_COLUMNS } from './resources/billing.js';
export { datasetDataKey } from './resources/datasets.js';
export { DEFAULT_INACTIVITY_SECONDS } from './resources/jobs/rlor.js';
export {
  FINAL_STATES,
  INITIAL_PROGRESS,
  JOB_STATES,
  type JobProgress,
  type JobState,
  type JobStatus,
} from './resources/jobs/states.js';
export {
  isStatusRecordKey,
  type RolloutLogRecord,
  rolloutLogPrefix,
  rolloutLogRecordSchema,
} from './resources/rollout-logs.js';
export {
  resolveProfile,
  TRAINING_SHAPES,
  type TrainingShape,
} from './resources/training-shapes.js';
export {
  FINE_TUNING_USAGE,
  MAX_EXPORT_DAYS,
  parseUsageTime,
  TEXT_COMPLETION_INFERENCE_USAGE,
  TRAINER_USAGE,
  USAGE_TYPES,
  type UsageEventFields,
  type UsageType,
  usageEvent,
} from './usage.js';

export interface ControlPlane {
  app: FastifyInstance;
  /** Starts serving; resolves with the base URL (http://host:port). */
  listen(port?: number, host?: string): Promise<string>;
  /**
   * Start-up: brings back the deployments the store holds (the registry's rows) and loads
   * each LoRA deployment's adapter again; resolves with what was restored and what failed.
   */
  restoreDeployments(): Promise<RestoredDeployments>;
  close(): Promise<void>;
}

const DEFAULT_MAX_UPLOAD = 150 << 20;

function makeDeps(opts: ControlPlaneOptions): Deps {
  let checkpoints: Promise<ObjectStore> | undefined;
  return {
    store: opts.store,
    orchestrator: opts.orchestrator,
    artifacts: opts.artifacts,
    deployments: opts.deployments,
    checkpointUrl: opts.checkpointUrl,
    checkpoints: () => {
      checkpoints ??= openObjectStore(opts.checkpointUrl);
      return checkpoints;
    },
    log: opts.logger ?? pino({ level: 'silent' }),
    maxUploadBytes: opts.maxUploadBytes ?? DEFAULT_MAX_UPLOAD,
    urlSigningKey: opts.urlSigningKey ?? randomBytes(32),
  };
}

export function createControlPlane(opts: ControlPlaneOptions): ControlPlane {
  const deps = makeDeps(opts);
  const app = buildServer(deps, [
    datasetRoutes(deps),
    sftRoutes(deps),
    dpoRoutes(deps),
    orpoRoutes(deps),
    rftRoutes(deps),
    rlorRoutes(deps),
    modelRoutes(deps),
    deploymentRoutes(deps),
    deployedModelRoutes(deps),
    trainingShapeRoutes(),
    evaluatorRoutes(deps),
    evaluatorV2Routes(deps),
    secretRoutes(deps),
    accountCheckpointRoutes(deps),
  ]);
  billingRoutes(app, deps);
  accountRoutes(app, deps);
  deploymentGatewayRoutes(app, deps);
  evalProtocolRoutes(app, deps);
  modelUploadRoute(app, deps);
  downloadRoute(app, deps);
  trainerGatewayRoutes(app, deps);
  webAppRoutes(app);
  return {
    app,
    async listen(port = 0, host = '127.0.0.1') {
      await app.listen({ port, host });
      const address = app.server.address();
      const actual = typeof address === 'object' && address ? address.port : port;
      return `http://${host.includes(':') ? `[${host}]` : host}:${actual}`;
    },
    restoreDeployments: () => restoreDeployments(deps),
    close: () => app.close(),
  };
}
