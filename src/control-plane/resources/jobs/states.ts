/**
 * Job states as the spec names them, and which of them a job can leave. The REST layer
 * writes JOB_STATE_PENDING at create and resume; the workflow writes everything after.
 */
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

/** `status` beside `state`: OK, or ERROR with the reason (the workflow writes failures). */
export interface JobStatus {
  code: 'OK' | 'ERROR';
  message: string;
}

/** Progress the workflow keeps up to date while the job runs (`jobProgress` on the body). */
export interface JobProgress {
  step: number;
  totalSteps: number;
  percent: number;
  epoch?: number;
}

export const INITIAL_PROGRESS: JobProgress = { step: 0, totalSteps: 0, percent: 0 };
