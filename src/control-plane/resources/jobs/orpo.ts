/**
 * `orpoJobs` (`temper create orpoj`): the SFT fields plus `orpoLambda` (the weight of the
 * odds-ratio term against the SFT term; default 1, ≥ 0, the ORPO loss's own schema through
 * src/recipes/fields.ts), on a preference (DPO) dataset. Unlike DPO there is no reference
 * model: the loss needs only the policy's logprobs of the chosen and rejected responses.
 */
import { z } from 'zod';
import { fields as F } from '../../../recipes/index.js';
import type { Deps } from '../../context.js';
import type { CollectionRoutes } from '../../http/router.js';
import { jobRoutes } from './routes.js';
import { parseJobBody, resolveTraining, trainingFields } from './training.js';

const orpoSchema = z.strictObject({
  ...trainingFields,
  orpoLambda: F.orpoLambda.schema.optional(),
});

export function orpoRoutes(deps: Deps): CollectionRoutes {
  return jobRoutes(deps, {
    collection: 'orpoJobs',
    singular: 'orpoJob',
    resumable: ['JOB_STATE_FAILED'],
    deleteActive: 'refuse',
    async build(ctx, body) {
      const input = parseJobBody(orpoSchema, body);
      const t = await resolveTraining(deps, ctx, input, 'dpo');
      return { ...t.fields, orpoLambda: input.orpoLambda ?? F.orpoLambda.default };
    },
  });
}
