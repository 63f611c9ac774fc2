/**
 * `supervisedFineTuningJobs` (`temper create sftj`): the shared training fields; LoRA rank 0
 * (full parameter) or a power of 2 up to 32, default 8; learning rate defaults to the
 * model default for LoRA or full training (src/recipes/fields.ts).
 */
import { z } from 'zod';
import type { Deps } from '../../context.js';
import type { CollectionRoutes } from '../../http/router.js';
import { jobRoutes } from './routes.js';
import { parseJobBody, resolveTraining, trainingFields } from './training.js';

const sftSchema = z.strictObject(trainingFields);

export function sftRoutes(deps: Deps): CollectionRoutes {
  return jobRoutes(deps, {
    collection: 'supervisedFineTuningJobs',
    singular: 'supervisedFineTuningJob',
    resumable: ['JOB_STATE_FAILED'],
    deleteActive: 'refuse',
    async build(ctx, body) {
      const input = parseJobBody(sftSchema, body);
      return (await resolveTraining(deps, ctx, input, 'sft')).fields;
    },
  });
}
