/** The recipes' shared machinery and the entry points to run one by name. */
export { type RecipeBaseConfig, recipeBaseSchema, recipeBaseShape } from './base-config.js';
export { type CheckpointEntry, RecipeCheckpoints, type ResumeInfo } from './checkpoints.js';
export { type OpenedClients, openRecipeClients, type RecipeClients } from './clients.js';
export { readRecipeConfigFile } from './config-file.js';
export { RecipeError } from './errors.js';
export { getRecipe, RECIPES, recipeNames, runRecipe, runRecipeFile } from './registry.js';
export { parseRecipeConfig, type RecipeDefinition, runRecipeDefinition } from './runner.js';
export { runSupervised, type SupervisedResult, supervisedBatchShape } from './supervised-run.js';
