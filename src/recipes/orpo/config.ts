/** ORPO recipe config (the cookbook's orpo_loop): preference pairs, no reference model. */
import { z } from 'zod';
import { preferenceRecipeShape } from '../dpo/config.js';
import { orpoLambda } from '../fields.js';

export const orpoConfigSchema = z.strictObject({
  ...preferenceRecipeShape,
  /** Weight of the odds-ratio term against the SFT term. */
  orpo_lambda: orpoLambda.schema.default(orpoLambda.default),
});

export type OrpoConfig = z.output<typeof orpoConfigSchema>;
