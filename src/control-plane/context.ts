/**
 * What every resource module is given: the injected components plus a few shared services
 * (the checkpoint store, opened on first use; the public catalog).
 */
import type { Logger } from 'pino';
import type { ObjectStore } from '../checkpoints/object-store/types.js';
import type { DeploymentRegistry } from '../deployments/registry.js';
import type { Store } from '../store/index.js';
import type { JobOrchestrator } from './orchestrator.js';

export interface ControlPlaneOptions {
  store: Store;
  orchestrator: JobOrchestrator;
  /** Uploaded datasets and evaluator sources: accounts/{a}/datasets/{id}/data.jsonl, ... */
  artifacts: ObjectStore;
  /** In-process deployments; without it the deployment routes answer UNIMPLEMENTED. */
  deployments?: DeploymentRegistry;
  /** The checkpoint store trainers write to (checkpoint catalog, promoted models). */
  checkpointUrl: string;
  logger?: Logger;
  /** Largest dataset upload in bytes (default 150 MiB, as the reference's :upload). */
  maxUploadBytes?: number;
  /**
   * Key signing download URLs (:getDownloadEndpoint). Default: random per process, so a URL
   * works on the control plane that signed it; `temper up` and `temper control-plane` derive it
   * from the secrets key, which every control-plane process of a stack shares.
   */
  urlSigningKey?: Buffer;
}

export interface Deps {
  store: Store;
  orchestrator: JobOrchestrator;
  artifacts: ObjectStore;
  deployments: DeploymentRegistry | undefined;
  checkpointUrl: string;
  /** The checkpoint store (opened once, on first use). */
  checkpoints(): Promise<ObjectStore>;
  log: Logger;
  maxUploadBytes: number;
  urlSigningKey: Buffer;
}
