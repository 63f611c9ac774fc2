import type { RecipeDefinition } from '../kit/runner.js';
import { igpoConfigSchema } from './config.js';
import { type IgpoResult, run } from './loop.js';

export { type IgpoConfig, igpoConfigSchema } from './config.js';
export { type IgpoResult, run } from './loop.js';

export const igpoRecipe: RecipeDefinition<typeof igpoConfigSchema, IgpoResult> = {
  name: 'igpo',
  schema: igpoConfigSchema,
  run,
  service: () => ({ createDeployment: true }),
};
