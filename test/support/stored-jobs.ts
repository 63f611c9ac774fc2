/**
 * Jobs written straight into a test platform's store and driven through its orchestrator, as
 * the REST layer would (for workflow-level tests that need no HTTP): a small SFT job on the
 * bundled model, and what `:resume` does.
 */
import type { JobRef } from '../../src/orchestration/jobs.js';
import type { TestPlatform } from './platform.js';

export const BUNDLED_BASE = 'accounts/temper/models/byte-lm-3m';
export const SURE_ANSWERS_SFT = 'accounts/temper/datasets/sure-answers-sft';

/** A full-parameter SFT job of one epoch, checkpointed every 2 steps, seeded; `extra` overrides. */
export async function createStoredSftJob(
  platform: TestPlatform,
  id: string,
  extra: Record<string, unknown> = {},
): Promise<JobRef> {
  const ref: JobRef = { collection: 'supervisedFineTuningJobs', account: 'acme', id };
  await platform.store.create(ref.collection, ref.account, ref.id, {
    state: 'JOB_STATE_PENDING',
    baseModel: BUNDLED_BASE,
    dataset: SURE_ANSWERS_SFT,
    outputModel: `accounts/acme/models/${id}-model`,
    batchSize: 1024,
    epochs: 1,
    learningRate: 5e-4,
    loraRank: 0,
    checkpointFrequency: 2,
    // The same data order for every such job, so their weights can be compared.
    seed: 7,
    ...extra,
  });
  return ref;
}

/**
 * What `:resume` does: the job leaves its final state first (a workflow never overwrites a
 * final state), then the orchestrator starts a new run.
 */
export async function resumeStoredJob(platform: TestPlatform, ref: JobRef): Promise<void> {
  await platform.store.update(
    ref.collection,
    ref.account,
    ref.id,
    (b: Record<string, unknown>) => ({ ...b, state: 'JOB_STATE_PENDING' }),
  );
  await platform.orchestrator.resume(ref);
}
