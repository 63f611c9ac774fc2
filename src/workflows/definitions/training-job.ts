/**
 * Managed SFT and DPO jobs. The workflow only decides; activities do the work:
 *
 *   prepare (validate dataset, resolve every default, count steps)
 *   → claim a host → launch a trainer pod there
 *   → train in segments that end at checkpoint boundaries (several steps per activity, so
 *     orchestration costs little; each segment saves a resumable DCP checkpoint if due)
 *   → export the final weights → promote them to the output model → COMPLETED.
 *
 * A segment that fails because its pod or host died is not retried in place: the workflow
 * claims a host again (any worker may answer), launches a fresh pod, restores the last
 * checkpoint and continues from its step. Training is deterministic (the data order is a
 * function of the plan, the engine is bitwise reproducible), so the final weights equal an
 * uninterrupted run's. Cancelling the workflow stops the pod and keeps the checkpoints.
 *
 * A restore whose checkpoint fails verification (a damaged shard: DATA_LOSS) is not retried:
 * the job restores the newest checkpoint before it that verifies and says so in its status.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  log,
} from '@temporalio/workflow';
import { innermostMessage } from '../errors.js';
import {
  FAILURE,
  type JobRef,
  type SegmentResult,
  type TrainerHandle,
  type TrainingPlan,
} from '../types.js';
import {
  controlActivities,
  heartbeatingControlActivities,
  hostActivities,
  stopPodQuietly,
  type WorkflowSettings,
} from './proxies.js';

const control = controlActivities();
const prepare = heartbeatingControlActivities();

interface SavedCheckpoint {
  checkpoint: string;
  step: number;
}

export type { WorkflowSettings };

export interface TrainingJobResult {
  outputModel: string;
  steps: number;
  trainerRestarts: number;
}

/** The step a segment starting at `from` ends at: the next checkpoint boundary or the end. */
export function segmentEnd(plan: TrainingPlan, from: number): number {
  if (plan.checkpointEvery <= 0) return plan.totalSteps;
  const next = (Math.floor(from / plan.checkpointEvery) + 1) * plan.checkpointEvery;
  return Math.min(next, plan.totalSteps);
}

export async function trainingJobWorkflow(
  ref: JobRef,
  settings: WorkflowSettings = {},
): Promise<TrainingJobResult> {
  let trainer: TrainerHandle | undefined;
  // A pod being launched, which the workflow holds no handle to yet (a cancel must stop it).
  let launching: { hostQueue: string; podJobId: string } | undefined;
  let plan: TrainingPlan | undefined;
  // The servable export of the newest checkpoint: a cancelled job's model.
  let lastWeights: { checkpoint: string; step: number } | null = null;
  try {
    plan = await prepare.prepareTrainingJob(ref);
    // Resumable checkpoints, oldest first; the last is the newest (and what a restore uses
    // unless it fails verification, then the one before it).
    const history: SavedCheckpoint[] = [...(plan.checkpointHistory ?? [])];
    if (plan.resumeFrom && history.at(-1)?.checkpoint !== plan.resumeFrom.checkpoint)
      history.push(plan.resumeFrom);
    const newest = () => history.at(-1) ?? null;
    let step = newest()?.step ?? 0;
    let restarts = 0;
    let earlyStopped = false;
    // What the user is told when a corrupt checkpoint was skipped (kept until the job ends).
    let recovery: string | undefined;
    for (;;) {
      const hostQueue = await control.claimHost();
      const host = hostActivities(hostQueue, settings);
      try {
        const attempt = (plan.firstPodAttempt ?? 0) + restarts;
        launching = { hostQueue, podJobId: `${plan.podJobIdBase}-t${attempt}` };
        trainer = await host.launchTrainer(plan, attempt);
        launching = undefined;
        let restoreFrom: string | null = newest()?.checkpoint ?? null;
        while (step < plan.totalSteps) {
          const toStep = segmentEnd(plan, step);
          // Resumable checkpoints at the frequency and at the end (a finished job's train
          // state can seed another run with its optimizer).
          const save = plan.checkpointEvery > 0 || toStep === plan.totalSteps;
          let result: SegmentResult;
          try {
            result = await host.trainSegment({
              plan,
              trainer,
              fromStep: step,
              toStep,
              save,
              restoreFrom,
            });
          } catch (error) {
            const bad = restoreFrom === null ? undefined : corruptCheckpoint(error);
            if (bad === undefined) throw error;
            // The pod refused the checkpoint before applying any of it: restore the one
            // before it on the same pod (or start over from the starting weights).
            const skipped = history.pop()!;
            const previous = newest();
            step = previous?.step ?? 0;
            restoreFrom = previous?.checkpoint ?? null;
            recovery = `restored from ${previous ? `${previous.checkpoint} (step ${previous.step})` : 'the starting weights (step 0)'}: ${skipped.checkpoint} (step ${skipped.step}) failed verification: ${bad}`;
            log.warn('checkpoint failed verification; restoring an older one', {
              job: plan.jobName,
              skipped: skipped.checkpoint,
              restoreFrom,
            });
            await control.setJobStatus(ref, {
              state: 'JOB_STATE_RUNNING',
              message: recovery,
              fields: {
                restoredFrom: {
                  checkpoint: previous?.checkpoint ?? null,
                  step,
                  skipped: { checkpoint: skipped.checkpoint, step: skipped.step, reason: bad },
                },
                lastCheckpoint: previous ?? undefined,
                checkpointHistory: [...history],
              },
            });
            continue;
          }
          restoreFrom = null;
          step = result.step;
          if (result.earlyStop) {
            earlyStopped = true;
            break;
          }
          if (result.checkpoint) history.push({ checkpoint: result.checkpoint, step: result.step });
          if (result.samplerCheckpoint)
            lastWeights = { checkpoint: result.samplerCheckpoint, step: result.step };
        }
        const finalWeights = await host.exportFinalWeights({ plan, trainer });
        const model = await control.promoteCheckpoint({
          account: plan.account,
          checkpoint: finalWeights,
          outputModelId: plan.outputModelId,
          baseModel: plan.baseModel,
          sourceJob: plan.jobName,
        });
        await host.stopTrainer(trainer.podJobId);
        trainer = undefined;
        await control.setJobStatus(ref, {
          state: earlyStopped ? 'JOB_STATE_EARLY_STOPPED' : 'JOB_STATE_COMPLETED',
          ...(recovery ? { message: recovery } : {}),
          fields: { outputModel: model.name, trainerRestarts: restarts },
        });
        return { outputModel: model.name, steps: step, trainerRestarts: restarts };
      } catch (error) {
        if (isCancellation(error) || restarts >= plan.maxTrainerRestarts) throw error;
        restarts += 1;
        const checkpoint = newest();
        log.warn('trainer lost; relaunching from the last checkpoint', {
          job: plan.jobName,
          step,
          checkpoint: checkpoint?.checkpoint ?? null,
          restarts,
          error: String(error),
        });
        // Best effort: the old pod may be alive (an activity failed, not the pod) or gone.
        const lost = trainer ?? launching;
        trainer = undefined;
        launching = undefined;
        if (lost) await stopPodQuietly(lost.hostQueue, lost.podJobId, settings);
        // Resume from the last checkpoint: steps after it are replayed identically.
        step = checkpoint?.step ?? 0;
        await control.setJobStatus(ref, {
          state: 'JOB_STATE_RUNNING',
          ...(recovery ? { message: recovery } : {}),
          fields: { trainerRestarts: restarts, restoredFrom: checkpoint },
        });
      }
    }
  } catch (error) {
    await CancellationScope.nonCancellable(async () => {
      const pod = trainer ?? launching;
      if (pod) await stopPodQuietly(pod.hostQueue, pod.podJobId, settings);
      if (isCancellation(error)) {
        await control.setJobStatus(ref, {
          state: 'JOB_STATE_CANCELLED',
          fields: await keepLastWeights(plan, lastWeights),
        });
      } else {
        await control.setJobStatus(ref, {
          state: 'JOB_STATE_FAILED',
          message: innermostMessage(error),
        });
      }
    });
    throw error;
  }
}

/** The verification failure of a restore (FAILURE.checkpointCorrupt), else undefined. */
function corruptCheckpoint(error: unknown): string | undefined {
  const cause = error instanceof ActivityFailure ? error.cause : error;
  if (cause instanceof ApplicationFailure && cause.type === FAILURE.checkpointCorrupt)
    return cause.message;
  return undefined;
}

/** Promotes the last checkpoint's weights to the output model (cancelled jobs keep them). */
async function keepLastWeights(
  plan: TrainingPlan | undefined,
  weights: { checkpoint: string; step: number } | null,
): Promise<Record<string, unknown>> {
  if (!plan || !weights) return {};
  try {
    const model = await control.promoteCheckpoint({
      account: plan.account,
      checkpoint: weights.checkpoint,
      outputModelId: plan.outputModelId,
      baseModel: plan.baseModel,
      sourceJob: plan.jobName,
    });
    return { outputModel: model.name, outputModelStep: weights.step };
  } catch (error) {
    log.warn('could not keep the last checkpoint as a model', { error: String(error) });
    return {};
  }
}
