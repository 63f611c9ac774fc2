/**
 * Distillation recipe config (the cookbook's distillation_loop, single teacher): the student
 * samples its own completions of the dataset's prompts; a frozen teacher — a deployment of
 * another model — scores those exact tokens; the per-token gap teacher − student is the
 * advantage of the importance-sampling loss (sampled reverse KL, src/losses/distillation).
 */
import { z } from 'zod';
import { temperature } from '../fields.js';
import { recipeBaseShape } from '../kit/base-config.js';

export const distillationConfigSchema = z.strictObject({
  ...recipeBaseShape,
  /** JSONL of `{"messages": [...]}` prompts (student-visible). */
  dataset: z.string().min(1, { message: 'dataset is required (a JSONL of prompts)' }),
  /** The teacher: a model directory or catalog model name; served by its own deployment. */
  teacher_model: z.string().min(1, { message: 'teacher_model is required' }),
  prompt_groups_per_step: z.number().int().min(1).max(1024).default(4),
  completions_per_prompt: z.number().int().min(1).max(256).default(2),
  max_completion_tokens: z.number().int().min(1).max(16384).default(32),
  temperature: temperature.schema.default(1),
  max_steps: z.number().int().positive().default(20),
});

export type DistillationConfig = z.output<typeof distillationConfigSchema>;
