/**
 * Learning-rate schedules: a linear warm-up from 0 to the peak over `warmupSteps`, then
 * constant, linear decay or cosine decay to `minRatio` × peak at `totalSteps`. Steps are
 * 0-based; the rate of step s is what that step's optimizer update uses.
 *
 * `constant` is what managed jobs have always used (peak × min(1, (s + 1) / warmup)); its
 * arithmetic is kept exactly so their results stay bitwise.
 */
import { z } from 'zod';
import { learningRateWarmupSteps } from './fields.js';

export const scheduleSchema = z.strictObject({
  kind: z.enum(['constant', 'linear', 'cosine']).default('constant'),
  warmupSteps: learningRateWarmupSteps.schema.default(learningRateWarmupSteps.default),
  /** The rate at the last step, as a fraction of the peak (linear and cosine). */
  minRatio: z.number().min(0).max(1).default(0),
});
export type ScheduleConfig = z.output<typeof scheduleSchema>;

export interface Schedule extends ScheduleConfig {
  /** Peak learning rate. */
  peak: number;
  /** Optimizer steps of the whole run (decay reaches minRatio at the last one). */
  totalSteps: number;
}

/** The learning rate of 0-based step `step`. */
export function learningRateAt(s: Schedule, step: number): number {
  if (s.warmupSteps > 0 && step + 1 < s.warmupSteps)
    return s.peak * Math.min(1, (step + 1) / s.warmupSteps);
  if (s.kind === 'constant')
    return s.warmupSteps > 0 ? s.peak * Math.min(1, (step + 1) / s.warmupSteps) : s.peak;
  // Decay over the steps after warm-up: the first of them runs at the peak, the last at min.
  const first = Math.max(s.warmupSteps - 1, 0);
  const span = Math.max(s.totalSteps - 1 - first, 1);
  const progress = Math.min(Math.max((step - first) / span, 0), 1);
  const shape = s.kind === 'linear' ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * progress));
  return s.peak * (s.minRatio + (1 - s.minRatio) * shape);
}
