/**
 * SFT recipe config (the cookbook's sft_loop): a JSONL of `{"messages": [...]}` conversations,
 * trained with cross-entropy on the assistant tokens, `batch_size` conversations per step.
 */
import { z } from 'zod';
import { DEMO_DATASET } from '../../catalog/bundled.js';
import { epochs } from '../fields.js';
import { recipeBaseShape } from '../kit/base-config.js';
import { checkBatching, supervisedBatchShape } from '../kit/supervised-run.js';

export const sftConfigSchema = z
  .strictObject({
    ...recipeBaseShape,
    /** Catalog dataset name or JSONL path. */
    dataset: z.string().min(1).default(DEMO_DATASET.name),
    epochs: epochs.job.schema.default(epochs.job.default),
    /** Conversations per optimizer step (the cookbook's batch_size, not tokens). */
    batch_size: z.number().int().min(1).max(4096).default(8),
    /** Stop after this many steps (default: epochs × examples / batch_size). */
    max_steps: z.number().int().positive().optional(),
    ...supervisedBatchShape,
  })
  .superRefine(checkBatching);

export type SftConfig = z.output<typeof sftConfigSchema>;
export type SftConfigInput = z.input<typeof sftConfigSchema>;
