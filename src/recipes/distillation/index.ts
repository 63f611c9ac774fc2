import type { RecipeDefinition } from '../kit/runner.js';
import { distillationConfigSchema } from './config.js';
import { type DistillationResult, run } from './loop.js';

export { type DistillationConfig, distillationConfigSchema } from './config.js';
export { type DistillationResult, run } from './loop.js';

export const distillationRecipe: RecipeDefinition<
  typeof distillationConfigSchema,
  DistillationResult
> = {
  name: 'distillation',
  schema: distillationConfigSchema,
  run,
  service: () => ({ createDeployment: true }),
};
