/** Promotion of a checkpoint to a model, as its own workflow so it survives restarts. */
import type { ModelSummary, PromoteInput } from '../types.js';
import { controlActivities } from './proxies.js';

// Copying a large model's files may take a while.
const control = controlActivities('30 minutes');

export async function promotionWorkflow(input: PromoteInput): Promise<ModelSummary> {
  return control.promoteCheckpoint(input);
}
