// A managed job's MLflow claim (src/workflows/activities/job-tracking.ts): where the run goes is
// the plan's, so claiming a flush's rows is a pure function of the row being updated — no store
// read of its own — and claims only steps no earlier flush claimed.
import { describe, expect, it } from 'vitest';
import type { Store } from '../../src/store/index.js';
import { JobTracking } from '../../src/workflows/activities/job-tracking.js';
import type { TrainingPlan } from '../../src/workflows/types.js';

// claim touches no store: a store that throws on any use proves it.
const noStore = new Proxy({} as Store, {
  get: (_, key) => {
    throw new Error(`claim used the store (${String(key)})`);
  },
});
const tracking = new JobTracking(noStore);
const tracked = {
  jobName: 'accounts/acme/supervisedFineTuningJobs/j',
  tracking: {
    mlflowTrackingUri: 'http://127.0.0.1:1',
    mlflowExperimentName: 'e',
    mlflowRunName: null,
  },
} as TrainingPlan;
const rows = [1, 2, 3].map((step) => ({ step, values: { 'loss:mean': step } }));

describe('JobTracking.claim', () => {
  it('claims only steps after the last one claimed, in the fields of the same row update', () => {
    const body = { mlflowRun: { runId: 'r1', loggedStep: 1 } };
    const c = tracking.claim(tracked, body, rows);
    expect(c?.fields).toEqual({ mlflowRun: { runId: 'r1', loggedStep: 3 } });
    expect(c?.claim).toEqual({ runId: 'r1', rows: rows.slice(1) });
    expect(
      tracking.claim(tracked, { mlflowRun: { runId: 'r1', loggedStep: 3 } }, rows),
    ).toBeUndefined();
  });

  it('claims nothing for an untracked plan (or one made before plans carried tracking)', () => {
    const body = { mlflowRun: { runId: 'r1', loggedStep: 0 } };
    expect(tracking.claim({ ...tracked, tracking: null }, body, rows)).toBeUndefined();
    const { tracking: _, ...older } = tracked;
    expect(tracking.claim(older as TrainingPlan, body, rows)).toBeUndefined();
  });

  it('leaves a run not yet opened (its start failed) to send, which opens and claims it', () => {
    expect(tracking.claim(tracked, {}, rows)).toEqual({ fields: {}, claim: { runId: null, rows } });
  });
});
