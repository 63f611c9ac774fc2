/**
 * The contract between the control plane and orchestration: which job collections exist, how
 * a job is referred to, the states a job moves through, and what the REST layer asks of the
 * orchestrator. The control plane writes the job resource to the store first (state
 * JOB_STATE_PENDING) and then asks the orchestrator to run it; the implementation
 * (src/workflows, Temporal) reads the job from the store, drives it and writes state, progress
 * and metrics back. Every method is idempotent per job name, so a retried HTTP request or a
 * control-plane restart never starts a job twice.
 *
 * Plain types and constants only: the Temporal workflow bundle imports it, and neither side
 * imports the other for it.
 */

export type JobCollection =
  | 'supervisedFineTuningJobs'
  | 'dpoJobs'
  | 'orpoJobs'
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

/** What the orchestrator refuses; the REST layer maps the code to its status. */
export class OrchestrationError extends Error {
  constructor(
    readonly code: 'unimplemented' | 'failed_precondition' | 'not_found',
    message: string,
  ) {
    super(message);
    this.name = 'OrchestrationError';
  }
}

/** Job states as the spec names them. The REST layer writes JOB_STATE_PENDING at create and resume; the workflow writes everything after. */
export const JOB_STATES = [
  'JOB_STATE_CREATING',
  'JOB_STATE_PENDING',
  'JOB_STATE_VALIDATING',
  'JOB_STATE_RUNNING',
  'JOB_STATE_IDLE',
  'JOB_STATE_COMPLETED',
  'JOB_STATE_FAILED',
  'JOB_STATE_CANCELLED',
  'JOB_STATE_EARLY_STOPPED',
  // Trainer jobs only: stopped by the platform, resumable (none of temper's own flows pause).
  'JOB_STATE_PAUSED',
] as const;
export type JobState = (typeof JOB_STATES)[number];

/** States a job never leaves on its own (FAILED can be resumed). */
export const FINAL_STATES: readonly string[] = [
  'JOB_STATE_COMPLETED',
  'JOB_STATE_FAILED',
  'JOB_STATE_CANCELLED',
  'JOB_STATE_EARLY_STOPPED',
];

export const isFinal = (state: unknown) => FINAL_STATES.includes(String(state));
