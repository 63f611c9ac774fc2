import type { RecipeDefinition } from '../kit/runner.js';
import { dpoConfigSchema } from './config.js';
import { type PreferenceResult, run } from './loop.js';

export { type DpoConfig, dpoConfigSchema, preferenceRecipeShape } from './config.js';
export { type PreferenceResult, run } from './loop.js';
export { type PreferencePair, preferenceRowSchema, readPreferencePairs } from './pairs.js';

export const dpoRecipe: RecipeDefinition<typeof dpoConfigSchema, PreferenceResult> = {
  name: 'dpo',
  schema: dpoConfigSchema,
  run,
};
