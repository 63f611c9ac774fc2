/**
 * `supervisedFineTuningJobs` (`temper create sftj`): the shared training fields; LoRA rank 0
 * (full parameter) or a power of 2 up to 32, default 8; learning rate defaults to the
 * model default for LoRA or full training.
 */
import { z } from 'zod';
import type { Deps } from '../../context.js';
import { parseBody } from '../../http/body.js';
import type { CollectionRoutes } from '../../http/router.js';
import { jobRoutes } from './routes.js';
import {
  DEFAULT_BATCH_TOKENS,
  defaultLearningRate,
  isPowerOfTwo,
  Problems,
  resolveTraining,
  sci,
  type TrainingInput,
  trainingFields,
} from './training.js';

const sftSchema = z.strictObject(trainingFields);

/** Checks SFT and DPO share: positive epochs, a sane rate, LoRA 0 or 2^k ≤ 32. */
export function checkTrainingRanges(input: TrainingInput): Problems {
  const p = new Problems();
  if (input.epochs !== undefined)
    p.check(input.epochs > 0, `Epochs ${input.epochs} must be greater than 0 (fractions allowed)`);
  if (input.learningRate !== undefined)
    p.check(
      input.learningRate > 0 && input.learningRate <= 1,
      `Learning rate ${sci(input.learningRate)} outside valid range (0, 1]`,
    );
  if (input.loraRank !== undefined)
    p.check(
      input.loraRank === 0 || (isPowerOfTwo(input.loraRank) && input.loraRank <= 32),
      `LoRA rank ${input.loraRank} must be 0 (full parameter) or a power of 2 up to 32`,
    );
  return p;
}

export function sftRoutes(deps: Deps): CollectionRoutes {
  return jobRoutes(deps, {
    collection: 'supervisedFineTuningJobs',
    singular: 'supervisedFineTuningJob',
    resumable: ['JOB_STATE_FAILED'],
    deleteActive: 'refuse',
    async build(ctx, body) {
      const input = parseBody(sftSchema, body);
      checkTrainingRanges(input).throwIfAny();
      const t = await resolveTraining(deps, ctx, input, 'sft');
      return {
        ...t.fields,
        batchSize: input.batchSize ?? DEFAULT_BATCH_TOKENS,
        learningRate: input.learningRate ?? defaultLearningRate(t.loraRank),
      };
    },
  });
}
