import type { RecipeDefinition } from '../kit/runner.js';
import type { RlResult } from '../rl/loop.js';
import { asyncRlConfigSchema } from './config.js';
import { run } from './loop.js';

export { type AsyncRlConfig, asyncRlConfigSchema } from './config.js';
export { run } from './loop.js';

export const asyncRlRecipe: RecipeDefinition<typeof asyncRlConfigSchema, RlResult> = {
  name: 'async-rl',
  schema: asyncRlConfigSchema,
  run,
  service: (c) => ({ createDeployment: true, replicaCount: c.deployment_replicas }),
};
