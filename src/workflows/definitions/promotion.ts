/** Promotion of a checkpoint to a model, as its own workflow so it survives restarts. */
import { proxyActivities } from '@temporalio/workflow';
import type { ControlActivities, ModelSummary, PromoteInput } from '../types.js';

const control = proxyActivities<ControlActivities>({
  startToCloseTimeout: '30 minutes',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: ['JobInvalid'] },
});

export async function promotionWorkflow(input: PromoteInput): Promise<ModelSummary> {
  return control.promoteCheckpoint(input);
}
