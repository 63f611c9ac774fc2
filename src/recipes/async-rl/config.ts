/**
 * Async RL recipe config (the cookbook's async_rl_loop): the RL recipe's fields plus
 * `max_staleness` — how many policy versions behind the deployment may be when a step's
 * rollouts are sampled. 0 is the synchronous loop; with 1, the next step's rollouts are
 * sampled while this step trains.
 */
import { z } from 'zod';
import { refuseKlWithoutGrpo, rlRecipeShape } from '../rl/config.js';

export const asyncRlConfigSchema = z
  .strictObject({
    ...rlRecipeShape,
    max_staleness: z.number().int().min(0).max(16).default(1),
  })
  .superRefine(refuseKlWithoutGrpo);

export type AsyncRlConfig = z.output<typeof asyncRlConfigSchema>;
