/**
 * How the workflows reach their activities: the control activities on the shared queue
 * (retried: they are stateless), and a host's pod activities on that host's own queue (never
 * retried in place: a failure means the pod or host is gone, and the workflow recovers
 * elsewhere).
 */
import { proxyActivities } from '@temporalio/workflow';
import { type ControlActivities, FAILURE, type HostActivities, JOB_ENDED } from '../types.js';

/** Knobs of the orchestration itself (not of the job). */
export interface WorkflowSettings {
  /** How long a host may go without a heartbeat before its work moves elsewhere (20 s). */
  hostHeartbeatTimeoutMs?: number;
  /** How long an activity may wait for its host to pick it up before the host counts as gone (30 s). */
  hostStartTimeoutMs?: number;
}

export function controlActivities(startToCloseTimeout = '10 minutes') {
  return proxyActivities<ControlActivities>({
    startToCloseTimeout,
    retry: { maximumAttempts: 5, nonRetryableErrorTypes: [FAILURE.jobInvalid, JOB_ENDED] },
  });
}

/**
 * Control activities that heartbeat while they work (preparing a job reads and renders its
 * dataset): a cancel reaches them through the heartbeat's answer, within seconds, and they
 * stop instead of finishing work nobody waits for.
 */
export function heartbeatingControlActivities() {
  return proxyActivities<ControlActivities>({
    startToCloseTimeout: '10 minutes',
    // Generous: validating a large dataset holds the event loop for seconds at a time, and a
    // missed heartbeat would retry the whole preparation. The first heartbeat goes out at
    // once, so a cancel that came before it is still seen within seconds.
    heartbeatTimeout: '1 minute',
    retry: { maximumAttempts: 5, nonRetryableErrorTypes: [FAILURE.jobInvalid, JOB_ENDED] },
  });
}

/** Pod activities, pinned to the host that runs the pod. */
export function hostActivities(
  hostQueue: string,
  settings: WorkflowSettings,
  options: { startWithinMs?: number; startToCloseTimeout?: string } = {},
) {
  return proxyActivities<HostActivities>({
    taskQueue: hostQueue,
    startToCloseTimeout: options.startToCloseTimeout ?? '24 hours',
    // A host that stops heartbeating is presumed dead; its work moves to another host.
    heartbeatTimeout: settings.hostHeartbeatTimeoutMs ?? 20_000,
    // A live host picks its activities up at once; one that does not is gone.
    scheduleToStartTimeout: options.startWithinMs ?? settings.hostStartTimeoutMs ?? 30_000,
    retry: { maximumAttempts: 1 },
  });
}

/** Stops a pod if its host still answers soon; a dead host's pods stop on their inactivity timeout. */
export async function stopPodQuietly(
  hostQueue: string,
  podJobId: string,
  settings: WorkflowSettings,
): Promise<void> {
  try {
    await hostActivities(hostQueue, settings, { startWithinMs: 15_000 }).stopTrainer(podJobId);
  } catch {
    // the host is gone
  }
}
