/**
 * A managed job's MLflow run: its settings as params when the run is created, every metric row
 * as the host activities write it to the store, the job's output model as artifacts when it
 * ends, and its final state as the run's status.
 *
 * Choices:
 * - Only activities call this (never workflow code): MLflow calls are I/O and their results
 *   differ run to run.
 * - Where the run goes (URI, experiment, run name) is the plan's `tracking`, resolved once when
 *   the job's plan is made: a metric write never reads the job's row for it.
 * - The run's id and the last step sent live in the job's row (`mlflowRun`), so a retried
 *   activity, another worker or the control activities find the same run. A step is claimed in
 *   the row before its metrics are sent, in the same row update that records the job's
 *   progress (`claim` is applied inside it): a retried activity re-running steps of a segment
 *   skips those already claimed, so no step reaches MLflow twice (at most once: a worker that
 *   dies between the claim and the send loses that batch's points, never duplicates them).
 * - A tracking failure never fails the job: it is kept as the row's `trackingWarning`
 *   (the job's log shows it) and the job trains on; the next row tries again.
 */
import { z } from 'zod';
import type { ObjectStore } from '../../checkpoints/object-store/index.js';
import { MODEL_FILE } from '../../checkpoints/promotion.js';
import { fields as F } from '../../recipes/index.js';
import type { MetricRow, Store } from '../../store/index.js';
import {
  openJobTracker,
  type ParamValue,
  RUN_ARTIFACTS,
  type Tracker,
} from '../../tracking/index.js';
import type { JobRef, JobTrackingPlan, TrainingPlan } from '../types.js';
import { type Body, refOf, updateLiveJob } from './job-rows.js';

const runSchema = z.object({ runId: z.string(), loggedStep: z.number().int() });
const trackedBodySchema = z.looseObject({
  mlflowTrackingUri: z.string().optional(),
  mlflowExperimentName: z.string().optional(),
  mlflowRunName: z.string().optional(),
  mlflowRun: runSchema.optional(),
  outputModel: z.string().optional(),
});

/** What a job logs as params: what it trains from and on, and every training setting. */
const PARAM_KEYS = [
  'baseModel',
  'warmStartFrom',
  'dataset',
  'evaluationDataset',
  'outputModel',
  'trainingShape',
  'evaluator',
  'remoteServerUrl',
  ...Object.keys({ ...F.jobSettings, ...F.rftSettings }),
];

/** The MLflow status a job's final state ends its run with. */
const RUN_STATUS: Record<string, 'FINISHED' | 'FAILED' | 'KILLED'> = {
  JOB_STATE_COMPLETED: 'FINISHED',
  JOB_STATE_EARLY_STOPPED: 'FINISHED',
  JOB_STATE_FAILED: 'FAILED',
  JOB_STATE_CANCELLED: 'KILLED',
};

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

type Row = Pick<MetricRow, 'step' | 'values'>;

/** Rows claimed for the run (`runId`, or a run still to be opened when null) by `claim`. */
export interface TrackingClaim {
  runId: string | null;
  rows: Row[];
}

export class JobTracking {
  /** Open runs by job name (one per job and process). */
  private readonly runs = new Map<string, Promise<{ tracker: Tracker; runId: string }>>();
  /**
   * The settings of jobs whose plans predate `plan.tracking` (a workflow started before it
   * existed), read from the job's row once, as their trainer starts on this host.
   */
  private readonly older = new Map<string, JobTrackingPlan | null>();

  /** Where the plan's job is tracked (null: nowhere). */
  private settingsOf(plan: TrainingPlan): JobTrackingPlan | null {
    return plan.tracking !== undefined ? plan.tracking : (this.older.get(plan.jobName) ?? null);
  }

  /** `checkpoints`: where promoted models live (their files are the run's artifacts). */
  constructor(
    private readonly store: Store,
    private readonly checkpoints?: ObjectStore,
  ) {}

  private open(jobName: string, make: () => Promise<{ tracker: Tracker; runId: string }>) {
    let run = this.runs.get(jobName);
    if (!run) {
      run = make();
      this.runs.set(jobName, run);
      // A run that failed to open is tried again by the next call.
      run.catch(() => this.runs.delete(jobName));
    }
    return run;
  }

  /** Reopens the run `runId`, or creates the job's run logging its params from `body`. */
  private async connect(
    jobName: string,
    tracking: JobTrackingPlan,
    runId: string | null,
    body: Body | undefined,
  ) {
    const params: Record<string, ParamValue> = { method: refOf(jobName).collection };
    for (const k of PARAM_KEYS) {
      const v = body?.[k];
      if (['string', 'number', 'boolean'].includes(typeof v)) params[k] = v as ParamValue;
    }
    const tracker = await openJobTracker(
      {
        mlflowTrackingUri: tracking.mlflowTrackingUri,
        mlflowExperimentName: tracking.mlflowExperimentName,
        ...(tracking.mlflowRunName ? { mlflowRunName: tracking.mlflowRunName } : {}),
      },
      { name: jobName, params, ...(runId ? { runId } : {}) },
    );
    const opened = tracker?.runRefs.find((r) => r.startsWith('mlflow:'))?.slice('mlflow:'.length);
    if (!tracker || !opened) throw new Error('no MLflow run was opened');
    return { tracker, runId: opened };
  }

  /**
   * Opens the job's run as its trainer starts (creating it, with its params, the first time);
   * a no-op for a plan without tracking.
   */
  async start(plan: TrainingPlan): Promise<void> {
    if (plan.tracking === null) return;
    await this.guard(plan.jobName, async () => {
      const ref = refOf(plan.jobName);
      const row = await this.store.get<Body>(ref.collection, ref.account, ref.id);
      const body = trackedBodySchema.parse(row?.body ?? {});
      if (plan.tracking === undefined)
        this.older.set(
          plan.jobName,
          body.mlflowTrackingUri
            ? {
                mlflowTrackingUri: body.mlflowTrackingUri,
                mlflowExperimentName: body.mlflowExperimentName ?? F.mlflowExperimentNameDefault,
                mlflowRunName: body.mlflowRunName ?? null,
              }
            : null,
        );
      const tracking = this.settingsOf(plan);
      if (!tracking) return;
      const prev = body.mlflowRun;
      const { runId } = await this.open(plan.jobName, () =>
        this.connect(plan.jobName, tracking, prev?.runId ?? null, row?.body),
      );
      if (!prev)
        await updateLiveJob(this.store, ref, (b) => ({
          ...b,
          mlflowRun: { runId, loggedStep: 0 },
        }));
    });
  }

  /**
   * Inside the row update that stores `rows`' progress: the rows whose steps no earlier call
   * claimed, and the row's fields that claim them (merge them into the update). Pure: no I/O.
   * Undefined when the plan is untracked or nothing is new.
   */
  claim(
    plan: TrainingPlan,
    body: Body,
    rows: readonly Row[],
  ): { fields: Body; claim: TrackingClaim } | undefined {
    if (!this.settingsOf(plan) || rows.length === 0) return undefined;
    const prev = trackedBodySchema.safeParse(body).data?.mlflowRun;
    const last = Math.max(...rows.map((r) => r.step));
    // The run could not be opened when the trainer started: `send` opens it and claims.
    if (!prev) return { fields: {}, claim: { runId: null, rows: [...rows] } };
    if (last <= prev.loggedStep) return undefined;
    return {
      fields: { mlflowRun: { ...prev, loggedStep: last } },
      claim: { runId: prev.runId, rows: rows.filter((r) => r.step > prev.loggedStep) },
    };
  }

  /** Sends what `claim` claimed. */
  async send(plan: TrainingPlan, claimed: TrackingClaim): Promise<void> {
    const tracking = this.settingsOf(plan);
    if (!tracking) return;
    await this.guard(plan.jobName, async () => {
      let { runId, rows } = claimed;
      if (runId === null) {
        // Only after a failed start: open the run now and claim in the row as start would.
        await this.start(plan);
        const again = await this.reclaim(plan, rows);
        if (!again) return;
        ({ runId, rows } = again);
      }
      const { tracker } = await this.open(plan.jobName, () =>
        this.connect(plan.jobName, tracking, runId, undefined),
      );
      for (const row of rows) {
        const values = Object.entries(row.values).filter(
          (e): e is [string, number] => typeof e[1] === 'number',
        );
        await tracker.logMetrics(row.step, Object.fromEntries(values));
      }
    });
  }

  /** Claims `rows` in a row update of their own (the recovery path of `send`). */
  private async reclaim(plan: TrainingPlan, rows: Row[]): Promise<TrackingClaim | undefined> {
    let claimed: TrackingClaim | undefined;
    await updateLiveJob(this.store, refOf(plan.jobName), (b) => {
      const c = this.claim(plan, b, rows);
      claimed = c?.claim.runId ? c.claim : undefined;
      return claimed ? { ...b, ...c!.fields } : b;
    });
    return claimed;
  }

  /**
   * Ends the job's run with its final state, after attaching the job's output model (its
   * record with every file's size and sha256) and checkpoints as artifacts. `body` is the row
   * as the final state was just written (no run, no MLflow settings: nothing).
   */
  async finish(ref: JobRef, state: string, body: Body): Promise<void> {
    const status = RUN_STATUS[state];
    const jobName = `accounts/${ref.account}/${ref.collection}/${ref.id}`;
    if (!status) return;
    const tracked = trackedBodySchema.safeParse(body).data;
    const run = tracked?.mlflowRun;
    const uri = tracked?.mlflowTrackingUri;
    if (!run || !uri) return;
    await this.guard(jobName, async () => {
      const tracker =
        (await this.runs.get(jobName)?.catch(() => undefined))?.tracker ??
        (await openJobTracker(
          { mlflowTrackingUri: uri },
          { name: jobName, params: {}, runId: run.runId },
        ));
      this.runs.delete(jobName);
      if (!tracker) return;
      await this.logOutputs(tracker, body, tracked.outputModel);
      await tracker.finish(status);
    });
  }

  private async logOutputs(tracker: Tracker, body: Body, outputModel: string | undefined) {
    await tracker.logArtifact(
      RUN_ARTIFACTS.checkpoints,
      `${JSON.stringify(
        {
          outputModel: outputModel ?? null,
          lastCheckpoint: body.lastCheckpoint ?? null,
          checkpointHistory: body.checkpointHistory ?? [],
          trainerJobIds: body.trainerJobIds ?? [],
        },
        null,
        2,
      )}\n`,
    );
    if (!outputModel || !this.checkpoints) return;
    const record = await this.checkpoints.get(`${outputModel}/${MODEL_FILE}`);
    await tracker.logArtifact(RUN_ARTIFACTS.model, record);
  }

  /** Runs `work`; a failure becomes the job's `trackingWarning`, never the caller's error. */
  private async guard(jobName: string, work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (error) {
      const warning = `MLflow tracking: ${message(error)}`;
      await updateLiveJob(this.store, refOf(jobName), (b) => ({
        ...b,
        trackingWarning: warning,
      })).catch(() => undefined);
    }
  }
}
