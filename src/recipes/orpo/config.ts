/** ORPO recipe config (the cookbook's orpo_loop): preference pairs, no reference model. */
import { z } from 'zod';
import { preferenceRecipeShape } from '../dpo/config.js';
import { orpoLambda } from '../fields.js';
import { checkBatching } from '../kit/supervised-run.js';

export const orpoConfigSchema = z
  .strictObject({
    ...preferenceRecipeShape,
    /** Weight of the odds-ratio term against the SFT term. */
    orpo_lambda: orpoLambda.schema.default(orpoLambda.default),
  })
  .superRefine(checkBatching);

export type OrpoConfig = z.output<typeof orpoConfigSchema>;
