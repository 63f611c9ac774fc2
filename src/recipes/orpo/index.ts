import type { PreferenceResult } from '../dpo/loop.js';
import type { RecipeDefinition } from '../kit/runner.js';
import { orpoConfigSchema } from './config.js';
import { run } from './loop.js';

export { type OrpoConfig, orpoConfigSchema } from './config.js';
export { run } from './loop.js';

export const orpoRecipe: RecipeDefinition<typeof orpoConfigSchema, PreferenceResult> = {
  name: 'orpo',
  schema: orpoConfigSchema,
  run,
};
