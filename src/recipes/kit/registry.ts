/**
 * Every runnable recipe by name, and the library calls the CLI uses: `runRecipe(name, config)`
 * (a config object) and `runRecipeFile(name, file, overrides)` (JSON or YAML).
 */
import type { Logger } from 'pino';
import { asyncRlRecipe } from '../async-rl/index.js';
import { distillationRecipe } from '../distillation/index.js';
import { dpoRecipe } from '../dpo/index.js';
import { igpoRecipe } from '../igpo/index.js';
import { orpoRecipe } from '../orpo/index.js';
import { rlRecipe } from '../rl/index.js';
import { sftRecipe } from '../sft/index.js';
import { readRecipeConfigFile } from './config-file.js';
import { RecipeError } from './errors.js';
import { type RecipeDefinition, runRecipeDefinition } from './runner.js';

// biome-ignore lint/suspicious/noExplicitAny: a table of recipes with different config types
type AnyRecipe = RecipeDefinition<any, unknown>;

export const RECIPES: Readonly<Record<string, AnyRecipe>> = {
  sft: sftRecipe,
  dpo: dpoRecipe,
  orpo: orpoRecipe,
  rl: rlRecipe,
  'async-rl': asyncRlRecipe,
  igpo: igpoRecipe,
  distillation: distillationRecipe,
};

export function recipeNames(): string[] {
  return Object.keys(RECIPES);
}

export function getRecipe(name: string): AnyRecipe {
  const def = RECIPES[name];
  if (!def) throw new RecipeError(`unknown recipe '${name}'; recipes: ${recipeNames().join(', ')}`);
  return def;
}

export async function runRecipe(
  name: string,
  config: unknown,
  o: { log?: Logger } = {},
): Promise<unknown> {
  return runRecipeDefinition(getRecipe(name), config, o);
}

export async function runRecipeFile(
  name: string,
  file: string,
  overrides: Readonly<Record<string, unknown>> = {},
  o: { log?: Logger } = {},
): Promise<unknown> {
  const def = getRecipe(name);
  const config = await readRecipeConfigFile(name, def.schema, file, overrides);
  return runRecipeDefinition(def, config, { ...o, source: file, validated: true });
}
