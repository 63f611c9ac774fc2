import type { RecipeDefinition } from '../kit/runner.js';
import { rlConfigSchema } from './config.js';
import { type RlResult, run } from './loop.js';

export { RL_RECIPE_LOSSES, type RlConfig, rlConfigSchema, rlRecipeShape } from './config.js';
export { type RlResult, run } from './loop.js';
export { REWARD_NAMES, REWARDS, type RewardFn, type RewardName } from './rewards.js';

export const rlRecipe: RecipeDefinition<typeof rlConfigSchema, RlResult> = {
  name: 'rl',
  schema: rlConfigSchema,
  run,
  service: (c) => ({ createDeployment: true, replicaCount: c.deployment_replicas }),
};
