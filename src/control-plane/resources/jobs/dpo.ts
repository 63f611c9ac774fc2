/**
 * `dpoJobs` (`temper create dpoj`): the SFT fields plus `beta` (default 0.1, 0 < β < 0.5,
 * the DPO loss's own schema and message, through src/recipes/fields.ts), on a DPO dataset.
 * The metrics file (`:getMetricsFileEndpoint`) points at the job's metrics as JSON lines.
 */
import { z } from 'zod';
import { fields as F } from '../../../recipes/index.js';
import type { Deps } from '../../context.js';
import type { CollectionRoutes } from '../../http/router.js';
import { getRow } from '../common.js';
import { jobRoutes } from './routes.js';
import { parseJobBody, resolveTraining, trainingFields } from './training.js';

const dpoSchema = z.strictObject({ ...trainingFields, beta: F.dpoBeta.schema.optional() });

export function dpoRoutes(deps: Deps): CollectionRoutes {
  return jobRoutes(deps, {
    collection: 'dpoJobs',
    singular: 'dpoJob',
    resumable: ['JOB_STATE_FAILED'],
    deleteActive: 'refuse',
    async build(ctx, body) {
      const input = parseJobBody(dpoSchema, body);
      const t = await resolveTraining(deps, ctx, input, 'dpo');
      return { ...t.fields, beta: input.beta ?? F.dpoBeta.default };
    },
    verbs: {
      getMetricsFileEndpoint: {
        method: 'GET',
        handler: async (ctx, id) => {
          const row = await getRow(deps, 'dpoJobs', ctx.account, id);
          return { signedUrl: `/v1/${row.name}/metrics?format=jsonl` };
        },
      },
    },
  });
}
