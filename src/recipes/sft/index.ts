import type { RecipeDefinition } from '../kit/runner.js';
import { type SftConfig, sftConfigSchema } from './config.js';
import { run, type SftResult } from './loop.js';

export { type SftConfig, type SftConfigInput, sftConfigSchema } from './config.js';
export { run, type SftResult } from './loop.js';

export const sftRecipe: RecipeDefinition<typeof sftConfigSchema, SftResult> = {
  name: 'sft',
  schema: sftConfigSchema,
  run: (config: SftConfig, clients) => run(config, clients),
};
