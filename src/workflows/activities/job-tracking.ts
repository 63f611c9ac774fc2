/**
 * A managed job's MLflow run (the job's `mlflowTrackingUri`, `mlflowExperimentName`,
 * `mlflowRunName`): its settings as params when the run is created, every metric row as the
 * host activities write it to the store, and the job's final state as the run's status.
 *
 * Choices:
 * - Only activities call this (never workflow code): MLflow calls are I/O and their results
 *   differ run to run.
 * - The run's id and the last step sent live in the job's row (`mlflowRun`), so a retried
 *   activity, another worker or the control activities find the same run. A step is claimed in
 *   the row before its metrics are sent: a retried activity re-running steps of a segment
 *   skips those already claimed, so no step reaches MLflow twice (at most once: a worker that
 *   dies between the claim and the send loses that batch's points, never duplicates them).
 * - A tracking failure never fails the job: it is kept as the row's `trackingWarning`
 *   (the job's log shows it) and the job trains on; the next row tries again.
 */
import { z } from 'zod';
import { fields as F } from '../../recipes/index.js';
import type { MetricRow, Store } from '../../store/index.js';
import { openJobTracker, type ParamValue, type Tracker } from '../../tracking/index.js';
import type { JobRef } from '../types.js';
import { refOf, updateLiveJob } from './job-rows.js';

const trackedBodySchema = z.looseObject({
  mlflowTrackingUri: z.string().optional(),
  mlflowExperimentName: z.string().optional(),
  mlflowRunName: z.string().optional(),
  mlflowRun: z.object({ runId: z.string(), loggedStep: z.number().int() }).optional(),
});
type TrackedBody = z.output<typeof trackedBodySchema>;

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

export class JobTracking {
  /** Open runs by job name (one per job and process). */
  private readonly runs = new Map<string, Promise<{ tracker: Tracker; runId: string }>>();

  constructor(private readonly store: Store) {}

  /** The job's row, or undefined when it configures no MLflow. */
  private async body(ref: JobRef): Promise<TrackedBody | undefined> {
    const row = await this.store.get<Record<string, unknown>>(ref.collection, ref.account, ref.id);
    const body = row ? trackedBodySchema.parse(row.body) : undefined;
    return body?.mlflowTrackingUri ? body : undefined;
  }

  private open(jobName: string, body: TrackedBody) {
    let run = this.runs.get(jobName);
    if (!run) {
      run = this.create(jobName, body);
      this.runs.set(jobName, run);
      // A run that failed to open is tried again by the next call.
      run.catch(() => this.runs.delete(jobName));
    }
    return run;
  }

  private async create(jobName: string, body: TrackedBody) {
    const settings = {
      mlflowTrackingUri: body.mlflowTrackingUri,
      ...(body.mlflowExperimentName ? { mlflowExperimentName: body.mlflowExperimentName } : {}),
      ...(body.mlflowRunName ? { mlflowRunName: body.mlflowRunName } : {}),
    };
    const params: Record<string, ParamValue> = { method: refOf(jobName).collection };
    for (const k of PARAM_KEYS) {
      const v = body[k];
      if (['string', 'number', 'boolean'].includes(typeof v)) params[k] = v as ParamValue;
    }
    const tracker = await openJobTracker(settings, {
      name: jobName,
      params,
      ...(body.mlflowRun ? { runId: body.mlflowRun.runId } : {}),
    });
    const runId = tracker?.runRefs.find((r) => r.startsWith('mlflow:'))?.slice('mlflow:'.length);
    if (!tracker || !runId) throw new Error('no MLflow run was opened');
    if (!body.mlflowRun)
      await updateLiveJob(this.store, refOf(jobName), (b) => ({
        ...b,
        mlflowRun: { runId, loggedStep: 0 },
      }));
    return { tracker, runId };
  }

  /** Opens (creates, logging params) the job's run now; a no-op without MLflow settings. */
  async start(jobName: string): Promise<void> {
    await this.guard(jobName, async () => {
      const body = await this.body(refOf(jobName));
      if (body) await this.open(jobName, body);
    });
  }

  /** Sends the metric rows the job just wrote whose steps no earlier call sent. */
  async record(jobName: string, rows: readonly Pick<MetricRow, 'step' | 'values'>[]) {
    await this.guard(jobName, async () => {
      const ref = refOf(jobName);
      const body = await this.body(ref);
      if (!body) return;
      const { tracker, runId } = await this.open(jobName, body);
      let from = 0;
      let claimed = false;
      const last = Math.max(...rows.map((r) => r.step));
      await updateLiveJob(this.store, ref, (b) => {
        const prev = trackedBodySchema.parse(b).mlflowRun;
        from = prev?.runId === runId ? prev.loggedStep : 0;
        claimed = last > from;
        return claimed ? { ...b, mlflowRun: { runId, loggedStep: last } } : b;
      });
      if (!claimed) return;
      for (const row of rows) {
        if (row.step <= from) continue;
        const values = Object.entries(row.values).filter(
          (e): e is [string, number] => typeof e[1] === 'number',
        );
        await tracker.logMetrics(row.step, Object.fromEntries(values));
      }
    });
  }

  /** Ends the job's run with its final state (no run, no MLflow settings: nothing). */
  async finish(ref: JobRef, state: string): Promise<void> {
    const status = RUN_STATUS[state];
    const jobName = `accounts/${ref.account}/${ref.collection}/${ref.id}`;
    if (!status) return;
    await this.guard(jobName, async () => {
      const body = await this.body(ref);
      if (!body?.mlflowRun) return;
      const tracker =
        (await this.runs.get(jobName)?.catch(() => undefined))?.tracker ??
        (await openJobTracker(
          { mlflowTrackingUri: body.mlflowTrackingUri },
          { name: jobName, params: {}, runId: body.mlflowRun.runId },
        ));
      this.runs.delete(jobName);
      await tracker?.finish(status);
    });
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
