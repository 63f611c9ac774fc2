/**
 * RL recipe config (the cookbook's rl_loop): prompts with an expected answer, a reward that
 * scores each completion against it, `completions_per_prompt` rollouts per prompt from the
 * sampling deployment, group-normalised advantages and one of the policy losses of src/losses
 * (grpo, dapo, gspo-token, cispo, dro). Weights reach the deployment every step (hot-load:
 * a base snapshot first, arc_v2 deltas after).
 */
import { z } from 'zod';
import { klBetaRefusal } from '../../losses/index.js';
import {
  epochs,
  maxConcurrentRollouts,
  maxTokens,
  responseCandidatesCount,
  rlKlBeta,
  temperature,
  topK,
  topP,
} from '../fields.js';
import { recipeBaseShape } from '../kit/base-config.js';
import { REWARD_NAMES } from './rewards.js';

export const RL_RECIPE_LOSSES = ['grpo', 'dapo', 'gspo-token', 'cispo', 'dro'] as const;

export const rlRecipeShape = {
  ...recipeBaseShape,
  /** JSONL of `{"messages": [...], "expected_answer": "..."}` prompts. */
  dataset: z.string().min(1, { message: 'dataset is required (a JSONL of prompts)' }),
  loss_method: z.enum(RL_RECIPE_LOSSES).default('grpo'),
  /**
   * grpo's KL penalty β·k3 to the reference (the base model before training), whose logprobs
   * the recipe computes every step; 0 = no KL and no reference trainer. grpo only.
   */
  kl_beta: rlKlBeta.schema.default(rlKlBeta.default),
  reward: z.enum(REWARD_NAMES).default('prefix_match'),
  /** Prompts per step. */
  prompt_groups_per_step: z.number().int().min(1).max(1024).default(4),
  /** Rollouts per prompt (a group; advantages are z-scores within it). */
  completions_per_prompt: responseCandidatesCount.schema.default(responseCandidatesCount.default),
  /** Generated tokens per rollout at most. */
  max_completion_tokens: maxTokens.schema.default(maxTokens.default),
  temperature: temperature.schema.default(1),
  /** Nucleus sampling of the rollouts (1 = off). */
  top_p: topP.schema.default(1),
  /** Top-k sampling of the rollouts (0 = off). */
  top_k: topK.schema.default(0),
  /** Rollouts in flight at most (whole groups: n per prompt); unset = every prompt at once. */
  max_concurrent_rollouts: maxConcurrentRollouts.schema.optional(),
  /**
   * The managed RFT jobs' data plan instead of `max_steps` steps over reshuffled prompts:
   * `epochs` seeded passes over the prompts (src/datasets), each cut into steps of
   * `prompt_groups_per_step` prompts (the whole dataset a step when it holds fewer than two
   * steps' worth); `max_steps` still caps the run.
   */
  epochs: epochs.rft.schema.optional(),
  max_steps: z.number().int().positive().default(20),
  /** Replicas of the sampling deployment. */
  deployment_replicas: z.number().int().min(1).max(16).default(1),
};

/** A KL penalty is grpo's alone: another method with kl_beta > 0 is refused at the boundary. */
export function refuseKlWithoutGrpo(
  c: { loss_method: (typeof RL_RECIPE_LOSSES)[number]; kl_beta: number },
  ctx: z.RefinementCtx,
): void {
  if (c.kl_beta > 0 && c.loss_method !== 'grpo') {
    ctx.addIssue({
      code: 'custom',
      path: ['kl_beta'],
      message: klBetaRefusal(c.loss_method.toUpperCase().replace('-', '_')),
    });
  }
}

export const rlConfigSchema = z.strictObject(rlRecipeShape).superRefine(refuseKlWithoutGrpo);
export type RlConfig = z.output<typeof rlConfigSchema>;
