/**
 * What the REST layer needs from orchestration. The control plane writes the job resource
 * to the store first (state JOB_STATE_PENDING) and then asks the orchestrator to run it; the
 * implementation (src/workflows, Temporal) reads the job from the store, drives it and writes
 * state, progress and metrics back. Every method is idempotent per job name, so a retried
 * HTTP request or a control-plane restart never starts a job twice.
 */

export type JobCollection =
  | 'supervisedFineTuningJobs'
  | 'dpoJobs'
  | 'reinforcementFineTuningJobs'
  | 'rlorTrainerJobs';

export interface JobRef {
  collection: JobCollection;
  account: string;
  id: string;
}

export interface PromoteRequest {
  account: string;
  /** accounts/{a}/rlorTrainerJobs/{job}/checkpoints/{id} */
  checkpoint: string;
  outputModelId: string;
  baseModel?: string;
}

export interface JobOrchestrator {
  /** Starts the job's workflow (no-op if it is already running). */
  start(job: JobRef): Promise<void>;
  /** Asks the workflow to stop its pods and end as JOB_STATE_CANCELLED (keeps checkpoints). */
  cancel(job: JobRef): Promise<void>;
  /**
   * Whether the job's workflow is still running. A job whose row never reached a final state
   * but whose workflow has closed (it died before recording its end) has nothing left to stop:
   * it may be deleted. Without this method every such job counts as running.
   */
  isActive?(job: JobRef): Promise<boolean>;
  /** Restarts a FAILED (or preempted) job from its last checkpoint. */
  resume(job: JobRef): Promise<void>;
  /** rlorTrainerJobs: runs one train step on the job's trainer (executeTrainStep). */
  executeTrainStep?(job: JobRef, request: unknown): Promise<unknown>;
  /** Promotes a checkpoint to accounts/{a}/models/{outputModelId}; resolves with the model. */
  promote(request: PromoteRequest): Promise<unknown>;
}
