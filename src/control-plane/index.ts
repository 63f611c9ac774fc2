/**
 * The control plane: the REST API over the store, the orchestrator, the artifact and
 * checkpoint stores and (optionally) the deployment registry.
 *
 *   const cp = createControlPlane({ store, orchestrator, artifacts, checkpointUrl });
 *   const url = await cp.listen(8080, '127.0.0.1');
 *   ...
 *   await cp.close(); // the app only: the injected store and registries belong to the caller
 */
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import type { ObjectStore } from '../checkpoints/object-store/index.js';
import { openObjectStore } from '../checkpoints/object-store/index.js';
import type { ControlPlaneOptions, Deps } from './context.js';
import { buildServer } from './http/server.js';
import { datasetRoutes } from './resources/datasets.js';

export { type BootstrapResult, bootstrapAccount } from './bootstrap.js';
export type { ControlPlaneOptions } from './context.js';
export { ApiError, type ApiStatus } from './http/errors.js';
export type { JobOrchestrator, JobRef, PromoteRequest } from './orchestrator.js';

export interface ControlPlane {
  app: FastifyInstance;
  /** Starts serving; resolves with the base URL (http://host:port). */
  listen(port?: number, host?: string): Promise<string>;
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
  };
}

export function createControlPlane(opts: ControlPlaneOptions): ControlPlane {
  const deps = makeDeps(opts);
  const app = buildServer(deps, [datasetRoutes(deps)]);
  return {
    app,
    async listen(port = 0, host = '127.0.0.1') {
      await app.listen({ port, host });
      const address = app.server.address();
      const actual = typeof address === 'object' && address ? address.port : port;
      return `http://${host.includes(':') ? `[${host}]` : host}:${actual}`;
    },
    close: () => app.close(),
  };
}
