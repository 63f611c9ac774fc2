/**
 * IGPO recipe config (the cookbook's igpo_loop): GRPO over multi-turn episodes with turn-level
 * rewards. Each row's conversation is an episode of `turns` assistant turns (after each reply
 * but the last the environment says `follow_up`); the outcome reward scores the last reply
 * against the row's expected answer, and every turn also earns its information gain — how much
 * it raised the policy's probability of the expected answer (src/losses igpoTurnAdvantages).
 */
import { z } from 'zod';
import { maxTokens, responseCandidatesCount, temperature } from '../fields.js';
import { recipeBaseShape } from '../kit/base-config.js';
import { REWARD_NAMES } from '../rl/rewards.js';

export const igpoConfigSchema = z.strictObject({
  ...recipeBaseShape,
  /** JSONL of `{"messages": [...], "expected_answer": "..."}` episodes. */
  dataset: z.string().min(1, { message: 'dataset is required (a JSONL of prompts)' }),
  /** Assistant turns per episode. */
  turns: z.number().int().min(1).max(16).default(2),
  /** The environment's user message between turns. */
  follow_up: z.string().min(1).default('Answer again.'),
  /** Discount of later turns' rewards into earlier turns' advantages. */
  gamma: z.number().min(0).max(1).default(0.95),
  /** Outcome reward of the last reply against the expected answer. */
  reward: z.enum(REWARD_NAMES).default('prefix_match'),
  prompt_groups_per_step: z.number().int().min(1).max(1024).default(4),
  completions_per_prompt: responseCandidatesCount.schema.default(responseCandidatesCount.default),
  max_completion_tokens: maxTokens.schema.default(maxTokens.default),
  temperature: temperature.schema.default(1),
  max_steps: z.number().int().positive().default(20),
});

export type IgpoConfig = z.output<typeof igpoConfigSchema>;
