/**
 * Experiment tracking: one Tracker interface, backends behind it (the log directory's
 * metrics.jsonl, MLflow over REST; W&B settings are accepted and refused with a clear error
 * where W&B cannot be reached). Recipes call `openTracker` once; managed jobs use the same
 * call without a log directory (see `openJobTracker`).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import {
  type TrackingSettings,
  type TrackingSettingsInput,
  trackingSettingsSchema,
} from './config.js';
import { LocalTracker } from './local.js';
import { MlflowTracker } from './mlflow.js';
import { type ParamValue, type RunStatus, type Tracker, TrackingError } from './types.js';
import { checkWandb, wandbRequested } from './wandb.js';

export {
  type TrackingSettings,
  type TrackingSettingsInput,
  trackingSettingsSchema,
} from './config.js';
export { LocalTracker } from './local.js';
export { MlflowClient, type MlflowRun, MlflowTracker, mlflowKey } from './mlflow.js';
export {
  flattenParams,
  type ParamValue,
  RUN_ARTIFACTS,
  type RunStatus,
  type Tracker,
  TrackingError,
} from './types.js';
export { checkWandb, WANDB_DEFAULT_BASE_URL, wandbRequested } from './wandb.js';

/** Several trackers as one: every call goes to each, in order. */
class FanOutTracker implements Tracker {
  constructor(private readonly trackers: readonly Tracker[]) {}
  get runRefs(): string[] {
    return this.trackers.flatMap((t) => t.runRefs);
  }
  async logParams(params: Readonly<Record<string, ParamValue>>): Promise<void> {
    for (const t of this.trackers) await t.logParams(params);
  }
  async logMetrics(step: number, metrics: Readonly<Record<string, number>>): Promise<void> {
    for (const t of this.trackers) await t.logMetrics(step, metrics);
  }
  async logArtifact(path: string, content: string | Uint8Array): Promise<void> {
    for (const t of this.trackers) await t.logArtifact(path, content);
  }
  async finish(status: RunStatus): Promise<void> {
    for (const t of this.trackers) await t.finish(status);
  }
}

/** What a log directory remembers about its tracked run (so a rerun continues it). */
const stateSchema = z.object({ mlflowTrackingUri: z.string(), mlflowRunId: z.string() });
const STATE_FILE = 'tracking.json';

/**
 * Checks settings at submission: the schema, and W&B (refused with its reason). Throws a
 * TrackingError naming the problem; nothing is created.
 */
export async function validateTracking(input: TrackingSettingsInput): Promise<TrackingSettings> {
  const parsed = trackingSettingsSchema.safeParse(input);
  if (!parsed.success)
    throw new TrackingError(
      `invalid tracking settings: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  if (wandbRequested(parsed.data)) await checkWandb(parsed.data);
  return parsed.data;
}

export interface OpenTrackerOptions {
  /** The recipe's log directory: metrics.jsonl there, and the MLflow run id to resume. */
  logDir?: string;
  /** Run name when the settings give none. */
  defaultRunName?: string;
  tags?: Readonly<Record<string, string>>;
}

/** The trackers the settings ask for (the log directory's always, when there is one). */
export async function openTracker(
  input: TrackingSettingsInput,
  o: OpenTrackerOptions = {},
): Promise<Tracker> {
  const s = await validateTracking(input);
  const trackers: Tracker[] = [];
  if (o.logDir) trackers.push(new LocalTracker(o.logDir));
  if (s.mlflowTrackingUri) {
    const uri = s.mlflowTrackingUri;
    const statePath = o.logDir ? join(o.logDir, STATE_FILE) : undefined;
    let runId: string | undefined;
    if (statePath) {
      const prev = await readFile(statePath, 'utf8').catch(() => undefined);
      const st = prev === undefined ? undefined : stateSchema.safeParse(JSON.parse(prev));
      if (st?.success && st.data.mlflowTrackingUri === uri) runId = st.data.mlflowRunId;
    }
    const runName = s.mlflowRunName ?? o.defaultRunName;
    const mlflow = await MlflowTracker.open({
      trackingUri: uri,
      experimentName: s.mlflowExperimentName,
      ...(runName ? { runName } : {}),
      ...(runId ? { runId } : {}),
      ...(o.tags ? { tags: o.tags } : {}),
    });
    if (statePath && o.logDir) {
      await mkdir(o.logDir, { recursive: true });
      await writeFile(
        statePath,
        `${JSON.stringify({ mlflowTrackingUri: uri, mlflowRunId: mlflow.runId })}\n`,
      );
    }
    trackers.push(mlflow);
  }
  return new FanOutTracker(trackers);
}

/**
 * The hook for managed jobs: a tracker for job `jobName` (run name = the job id), or
 * undefined when the settings configure no tracking backend. Params are logged here, when the
 * run is created; `runId` reopens the job's run instead (a later activity, another worker).
 */
export async function openJobTracker(
  input: TrackingSettingsInput,
  job: { name: string; params: Readonly<Record<string, ParamValue>>; runId?: string },
): Promise<Tracker | undefined> {
  const s = await validateTracking(input);
  if (!s.mlflowTrackingUri) return undefined;
  if (job.runId)
    return MlflowTracker.open({
      trackingUri: s.mlflowTrackingUri,
      experimentName: s.mlflowExperimentName,
      runId: job.runId,
    });
  const tracker = await openTracker(s, {
    defaultRunName: job.name.split('/').pop() ?? job.name,
    tags: { 'temper.job': job.name },
  });
  await tracker.logParams(job.params);
  return tracker;
}
