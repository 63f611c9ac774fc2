/**
 * `dpoJobs` (`temper create dpoj`): the SFT fields plus `beta` (default 0.1, 0 < β < 0.5,
 * checked by the DPO loss's own schema so the message is the loss's), on a DPO dataset.
 * The metrics file (`:getMetricsFileEndpoint`) points at the job's metrics as JSON lines.
 */
import { z } from 'zod';
import { dpoConfigSchema } from '../../../losses/preference.js';
import type { Deps } from '../../context.js';
import { parseBody } from '../../http/body.js';
import type { CollectionRoutes } from '../../http/router.js';
import { getRow } from '../common.js';
import { jobRoutes } from './routes.js';
import { checkTrainingRanges } from './sft.js';
import {
  DEFAULT_BATCH_TOKENS,
  defaultLearningRate,
  resolveTraining,
  trainingFields,
} from './training.js';

const dpoSchema = z.strictObject({ ...trainingFields, beta: dpoConfigSchema.shape.beta });

export function dpoRoutes(deps: Deps): CollectionRoutes {
  return jobRoutes(deps, {
    collection: 'dpoJobs',
    singular: 'dpoJob',
    resumable: ['JOB_STATE_FAILED'],
    deleteActive: 'refuse',
    async build(ctx, body) {
      const input = parseBody(dpoSchema, body);
      checkTrainingRanges(input).throwIfAny();
      const t = await resolveTraining(deps, ctx, input, 'dpo');
      return {
        ...t.fields,
        beta: input.beta,
        batchSize: input.batchSize ?? DEFAULT_BATCH_TOKENS,
        learningRate: input.learningRate ?? defaultLearningRate(t.loraRank),
      };
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
