/**
 * Every write an activity makes to a job's row goes through here, guarded: once a job is in a
 * final state (COMPLETED, FAILED, CANCELLED, EARLY_STOPPED) no late status or progress write
 * of an activity that had not yet noticed the end may overwrite it. The store checks the
 * guard inside the update's transaction (UpdateOptions.unless), so a cancel racing a progress
 * write cannot lose. Only the REST layer moves a job out of a final state (`:resume`), and it
 * writes without the guard.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { FINAL_STATES } from '../../orchestration/jobs.js';
import { GuardRefusedError, type Store, type UpdateGuard } from '../../store/index.js';
import { JOB_ENDED, type JobRef } from '../types.js';

export const LIVE_JOB: UpdateGuard = { field: 'state', values: FINAL_STATES };

export type Body = Record<string, unknown>;

/**
 * Applies `mutate` to the job's body unless the job has ended; resolves false (nothing
 * written) when it has.
 */
export async function updateLiveJob(
  store: Store,
  ref: JobRef,
  mutate: (body: Body) => Body,
): Promise<boolean> {
  try {
    await store.update<Body>(ref.collection, ref.account, ref.id, mutate, { unless: LIVE_JOB });
    return true;
  } catch (error) {
    // Only the guard's refusal means the job ended; a body the store cannot seal (no secrets
    // key) is a failure, not an ended job.
    if (error instanceof GuardRefusedError) return false;
    throw error;
  }
}

/** What an activity throws when it finds its job ended under it: stop, never retry. */
export function jobEnded(ref: JobRef): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `accounts/${ref.account}/${ref.collection}/${ref.id} has ended; this activity stops`,
    JOB_ENDED,
  );
}

/** `accounts/{a}/{collection}/{id}` → the job's reference. */
export function refOf(jobName: string): JobRef {
  const [, account, collection, id] = jobName.split('/') as [
    string,
    string,
    JobRef['collection'],
    string,
  ];
  return { collection, account, id };
}

/** A saved resumable checkpoint and the step it holds. */
export interface SavedCheckpoint {
  checkpoint: string;
  step: number;
}

/** The job's resumable checkpoints, oldest first (`checkpointHistory`, else `lastCheckpoint`). */
export function checkpointHistory(body: Body): SavedCheckpoint[] {
  const isSaved = (c: unknown): c is SavedCheckpoint =>
    typeof c === 'object' &&
    c !== null &&
    typeof (c as SavedCheckpoint).checkpoint === 'string' &&
    typeof (c as SavedCheckpoint).step === 'number';
  const history = Array.isArray(body.checkpointHistory)
    ? body.checkpointHistory.filter(isSaved)
    : [];
  if (history.length === 0 && isSaved(body.lastCheckpoint)) return [body.lastCheckpoint];
  return history;
}
