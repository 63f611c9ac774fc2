/**
 * An rlorTrainerJob (a Training API trainer the user drives): launch its pod on a host,
 * publish the address, and watch it. The pod ends by itself after its inactivity timeout
 * (→ COMPLETED) or when the job is deleted (workflow cancelled → CANCELLED). A pod that
 * crashes or whose host dies is preemption (→ FAILED, resumable): `:resume` starts a new run
 * with a fresh pod under the same job id, and the client reloads its last checkpoint
 * (ServiceClient.reconnectAndWait).
 */
import { CancellationScope, defineUpdate, isCancellation, setHandler } from '@temporalio/workflow';
import { innermostMessage } from '../errors.js';
import {
  type JobRef,
  type TrainerExit,
  type TrainerJobSpec,
  type TrainStepRequest,
  type TrainStepResult,
  workflowIdOf,
} from '../types.js';
import {
  controlActivities,
  hostActivities,
  stopPodQuietly,
  type WorkflowSettings,
} from './proxies.js';

const control = controlActivities();

/** The trainer is supervised for as long as it lives. */
function host(queue: string, settings: WorkflowSettings) {
  return hostActivities(queue, settings, { startToCloseTimeout: '30 days' });
}

/** `:executeTrainStep`: one step on the job's trainer, run by the host that owns the pod. */
export const executeTrainStepUpdate = defineUpdate<TrainStepResult, [TrainStepRequest]>(
  'executeTrainStep',
);

export async function trainerJobWorkflow(
  ref: JobRef,
  settings: WorkflowSettings = {},
): Promise<TrainerExit> {
  let hostQueue: string | undefined;
  let serving = false;
  let spec: TrainerJobSpec | undefined;
  // Steps run one at a time, in arrival order, on the pod's own host; a request without a
  // modelId trains the job's own model (made by the first such step).
  let queue: Promise<unknown> = Promise.resolve();
  let ownModel: string | undefined;
  setHandler(
    executeTrainStepUpdate,
    (request: TrainStepRequest): Promise<TrainStepResult> => {
      const run = queue.then(async () => {
        const modelId = request.modelId ?? ownModel;
        const result = await host(hostQueue!, settings).executeTrainStep(
          spec!,
          modelId ? { ...request, modelId } : request,
        );
        if (!request.modelId) ownModel = result.modelId;
        return result;
      });
      queue = run.catch(() => undefined);
      return run;
    },
    {
      validator: (_request: TrainStepRequest) => {
        if (!serving) throw new Error(`trainer job ${workflowIdOf(ref)} is not serving`);
      },
    },
  );
  try {
    // Inside the try: a cancel that arrives while the job is read still ends it CANCELLED.
    spec = await control.prepareTrainerJob(ref);
    hostQueue = await control.claimHost();
    const pod = await host(hostQueue, settings).launchTrainerJob(spec);
    await control.setJobStatus(ref, {
      state: 'JOB_STATE_RUNNING',
      // The pod's token is already in the row (launchTrainerJob wrote it, sealed): only the
      // job's account reads either.
      fields: { trainerAddress: pod.address, trainerHost: hostQueue },
    });
    serving = true;
    let exit: TrainerExit;
    try {
      exit = await host(hostQueue, settings).superviseTrainer(spec);
    } catch (error) {
      if (isCancellation(error)) throw error;
      exit = { kind: 'lost', reason: 'the trainer host stopped responding' };
    }
    serving = false;
    await control.setJobStatus(ref, {
      state: exit.kind === 'stopped' ? 'JOB_STATE_COMPLETED' : 'JOB_STATE_FAILED',
      message:
        exit.kind === 'stopped'
          ? `trainer stopped: ${exit.reason}`
          : `trainer lost (${exit.reason}); resume the job to get a new trainer`,
      fields: { trainerAddress: null, trainerToken: null },
    });
    return exit;
  } catch (error) {
    await CancellationScope.nonCancellable(async () => {
      if (hostQueue && spec) await stopPodQuietly(hostQueue, spec.jobId, settings);
      await control.setJobStatus(ref, {
        state: isCancellation(error) ? 'JOB_STATE_CANCELLED' : 'JOB_STATE_FAILED',
        message: isCancellation(error) ? '' : innermostMessage(error),
        fields: { trainerAddress: null, trainerToken: null },
      });
    });
    throw error;
  }
}
