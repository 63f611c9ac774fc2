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
 */
import { CancellationScope, isCancellation, log } from '@temporalio/workflow';
import { innermostMessage } from '../errors.js';
import type { JobRef, SegmentResult, TrainerHandle, TrainingPlan } from '../types.js';
import {
  controlActivities,
  hostActivities,
  stopPodQuietly,
  type WorkflowSettings,
} from './proxies.js';

const control = controlActivities();

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
  let plan: TrainingPlan | undefined;
  // The servable export of the newest checkpoint: a cancelled job's model.
  let lastWeights: { checkpoint: string; step: number } | null = null;
  try {
    plan = await control.prepareTrainingJob(ref);
    // The newest resumable checkpoint and the step it was saved at.
    let checkpoint: string | null = plan.resumeFrom?.checkpoint ?? null;
    let checkpointAt = plan.resumeFrom?.step ?? 0;
    let step = checkpointAt;
    let restarts = 0;
    let earlyStopped = false;
    for (;;) {
      const hostQueue = await control.claimHost();
      const host = hostActivities(hostQueue, settings);
      try {
        trainer = await host.launchTrainer(plan, restarts);
        let restoreFrom: string | null = checkpoint;
        while (step < plan.totalSteps) {
          const toStep = segmentEnd(plan, step);
          // Resumable checkpoints at the frequency and at the end (a finished job's train
          // state can seed another run with its optimizer).
          const save = plan.checkpointEvery > 0 || toStep === plan.totalSteps;
          const result: SegmentResult = await host.trainSegment({
            plan,
            trainer,
            fromStep: step,
            toStep,
            save,
            restoreFrom,
          });
          restoreFrom = null;
          step = result.step;
          if (result.earlyStop) {
            earlyStopped = true;
            break;
          }
          if (result.checkpoint) {
            checkpoint = result.checkpoint;
            checkpointAt = result.step;
          }
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
          fields: { outputModel: model.name, trainerRestarts: restarts },
        });
        return { outputModel: model.name, steps: step, trainerRestarts: restarts };
      } catch (error) {
        if (isCancellation(error) || restarts >= plan.maxTrainerRestarts) throw error;
        restarts += 1;
        log.warn('trainer lost; relaunching from the last checkpoint', {
          job: plan.jobName,
          step,
          checkpoint,
          restarts,
          error: String(error),
        });
        // Best effort: the old pod may be alive (an activity failed, not the pod) or gone.
        const lost = trainer;
        trainer = undefined;
        if (lost) await stopQuietly(lost, settings);
        // Resume from the last checkpoint: steps after it are replayed identically.
        step = checkpointAt;
        await control.setJobStatus(ref, {
          state: 'JOB_STATE_RUNNING',
          fields: {
            trainerRestarts: restarts,
            restoredFrom: checkpoint === null ? null : { checkpoint, step: checkpointAt },
          },
        });
      }
    }
  } catch (error) {
    await CancellationScope.nonCancellable(async () => {
      if (trainer) await stopQuietly(trainer, settings);
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

function stopQuietly(trainer: TrainerHandle, settings: WorkflowSettings): Promise<void> {
  return stopPodQuietly(trainer.hostQueue, trainer.podJobId, settings);
}
