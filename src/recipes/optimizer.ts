/**
 * AdamW, the one optimizer temper trains with: its configuration as one zod schema and one
 * type. The engine's optimizer step (src/engine adamParamsSchema adds only its internal
 * gradient scale), the SDK's `optimStep`, the Tinker-wire gateway and `:executeTrainStep` all
 * take this; recipes and managed jobs build one with `adamW(...)`.
 *
 * Defaults are the engine's (beta1 0.9, beta2 0.95, eps 1e-8, no weight decay, no clipping),
 * so a Training API call that leaves a field unset steps exactly as it did before. Managed
 * SFT/DPO/RFT jobs have always stepped with beta2 0.999 and clipping at norm 1: that is
 * MANAGED_JOB_ADAMW below, named once, so their results stay bitwise what they were.
 *
 * A leaf module (zod only): the engine imports it without depending on anything above it.
 */
import { z } from 'zod';

/** Each AdamW setting's range (a boundary that takes some of them optional builds on this). */
export const adamWFields = {
  learningRate: z.number().nonnegative().finite(),
  beta1: z.number().min(0).lt(1),
  beta2: z.number().min(0).lt(1),
  eps: z.number().positive(),
  weightDecay: z.number().nonnegative(),
  /** Maximum global gradient norm; 0 disables clipping. */
  gradClipNorm: z.number().nonnegative(),
};

/** The engine's defaults: what an unset field steps with. */
export const ADAMW_DEFAULTS = {
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0,
  gradClipNorm: 0,
} as const;

export const adamWSchema = z.object({
  learningRate: adamWFields.learningRate,
  beta1: adamWFields.beta1.default(ADAMW_DEFAULTS.beta1),
  beta2: adamWFields.beta2.default(ADAMW_DEFAULTS.beta2),
  eps: adamWFields.eps.default(ADAMW_DEFAULTS.eps),
  weightDecay: adamWFields.weightDecay.default(ADAMW_DEFAULTS.weightDecay),
  gradClipNorm: adamWFields.gradClipNorm.default(ADAMW_DEFAULTS.gradClipNorm),
});

/** A complete AdamW configuration (every field resolved). */
export type AdamWConfig = z.output<typeof adamWSchema>;
/** What a caller may give: the learning rate, and any field it wants other than the default. */
export type AdamWParams = z.input<typeof adamWSchema>;

/** AdamW with every unset field at its default (and each given one checked). */
export function adamW(params: AdamWParams): AdamWConfig {
  return adamWSchema.parse(params);
}

/**
 * The optimizer of managed SFT, DPO, ORPO and RFT jobs (everything but the step's learning
 * rate, which the schedule gives): beta2 0.999 and gradients clipped at norm 1.
 */
export const MANAGED_JOB_ADAMW = {
  beta1: 0.9,
  beta2: 0.999,
  weightDecay: 0,
  gradClipNorm: 1,
} as const satisfies Omit<AdamWParams, 'learningRate'>;
