// A managed job's MLflow claim (src/workflows/activities/job-tracking.ts): where the run goes is
// the plan's, so claiming a flush's rows is a pure function of the row being updated — no store
// read of its own — and claims only steps no earlier flush claimed.
import { describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/index.js';
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

  it('claims nothing for an untracked plan (nor for an older plan whose trainer it did not start)', () => {
    const body = { mlflowRun: { runId: 'r1', loggedStep: 0 } };
    expect(tracking.claim({ ...tracked, tracking: null }, body, rows)).toBeUndefined();
    const { tracking: _, ...older } = tracked;
    expect(tracking.claim(older as TrainingPlan, body, rows)).toBeUndefined();
  });

  it('leaves a run not yet opened (its start failed) to send, which opens and claims it', () => {
    expect(tracking.claim(tracked, {}, rows)).toEqual({ fields: {}, claim: { runId: null, rows } });
  });

  it('takes an older plan’s settings from its row as its trainer starts; a failed start is a warning', async () => {
    const store = openStore('sqlite::memory:');
    await store.migrate();
    const { tracking: _, ...older } = tracked;
    const plan = older as TrainingPlan;
    // A tracking URI nothing listens on: the run cannot be opened.
    await store.create('supervisedFineTuningJobs', 'acme', 'j', {
      state: 'JOB_STATE_RUNNING',
      mlflowTrackingUri: 'http://127.0.0.1:1',
    });
    const jobs = new JobTracking(store);
    await jobs.start(plan);
    const row = await store.get<Record<string, unknown>>('supervisedFineTuningJobs', 'acme', 'j');
    expect(row?.body.trackingWarning).toMatch(/^MLflow tracking: .*unreachable/);
    // The row's settings now track the plan: its rows are claimed for a run still to open.
    expect(jobs.claim(plan, row!.body, rows)).toEqual({ fields: {}, claim: { runId: null, rows } });
    await store.close();
  });
});
