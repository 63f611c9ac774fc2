/**
 * Job states (src/orchestration/jobs.ts, shared with the workflows), which of them a job can
 * leave, and the status and progress fields the workflow keeps on a job's body.
 */
export {
  FINAL_STATES,
  isFinal,
  JOB_STATES,
  type JobState,
} from '../../../orchestration/jobs.js';

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
