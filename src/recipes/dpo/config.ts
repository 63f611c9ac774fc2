/**
 * DPO recipe config (the cookbook's dpo_loop): preference pairs, a frozen reference whose
 * logprobs are computed once at the start, `batch_size` pairs per step.
 */
import { z } from 'zod';
import { dpoBeta, epochs } from '../fields.js';
import { recipeBaseShape } from '../kit/base-config.js';
import { checkBatching, supervisedBatchShape } from '../kit/supervised-run.js';

export const preferenceRecipeShape = {
  ...recipeBaseShape,
  /** JSONL of preference pairs (chosen/rejected or input/preferred_output/non_preferred_output). */
  dataset: z.string().min(1, { message: 'dataset is required (a JSONL of preference pairs)' }),
  epochs: epochs.job.schema.default(epochs.job.default),
  /** Pairs per optimizer step. */
  batch_size: z.number().int().min(1).max(1024).default(4),
  max_steps: z.number().int().positive().optional(),
  ...supervisedBatchShape,
};

export const dpoConfigSchema = z
  .strictObject({
    ...preferenceRecipeShape,
    beta: dpoBeta.schema.default(dpoBeta.default),
  })
  .superRefine(checkBatching);

export type DpoConfig = z.output<typeof dpoConfigSchema>;
