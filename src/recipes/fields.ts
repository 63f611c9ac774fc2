/**
 * Every training setting that managed jobs (REST, CLI, workflows) and recipes share, defined
 * once: its zod schema (range and the documented message, managed-jobs.md) and its default.
 * Nothing else in the code base may define a schema, range or default for these settings; it
 * imports them from here (test/recipes/fields.test.ts checks that).
 *
 * Where the spec documents a different range for one family of methods, the variants sit side
 * by side in the setting's own entry: `job` (SFT, DPO, ORPO and the supervised recipes), `rft`
 * (reinforcement fine-tuning), `trainer` (rlorTrainerJobs, the Training API's trainers).
 *
 * Range messages are the spec's words (`Learning rate 1e-2 outside valid range [1e-5, 5e-4]`);
 * an issue carrying one is marked `documented`, so a boundary can show it as written instead
 * of prefixing the field's path (see documentedIssue). Type errors keep zod's message.
 *
 * This module is a leaf (zod, src/losses' own config schemas, the engine's settings schema and
 * the duration parser), so the workflows' activities, the control plane, the CLI and recipes
 * all import it.
 */
import { z } from 'zod';
import { engineOptionsSchema } from '../engine/options.js';
import { dpoConfigSchema, orpoConfigSchema } from '../losses/preference.js';
import { trackingSettingsSchema } from '../tracking/config.js';
import { durationSeconds } from './durations.js';

/** 1e-2, 5e-4: how the spec writes rates in messages. */
export const sci = (x: number) => x.toExponential().replace('e+', 'e');

export const isPowerOfTwo = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

const whole = (x: number) => Number.isInteger(x);

/** The `params` of an issue whose message is the spec's, word for word. */
const DOCUMENTED = { documented: true } as const;

/** True for an issue raised by a range check of this module (its message stands alone). */
export function documentedIssue(issue: z.core.$ZodIssue): boolean {
  return (
    issue.code === 'custom' &&
    (issue.params as { documented?: boolean } | undefined)?.documented === true
  );
}

/** A number schema with a range check whose message names the value, as the spec writes it. */
function ranged<T extends z.ZodNumber>(
  base: T,
  ok: (x: number) => boolean,
  message: (x: number) => string,
): T {
  return base.superRefine((x, ctx) => {
    if (!ok(x)) ctx.addIssue({ code: 'custom', message: message(x), params: DOCUMENTED });
  }) as T;
}

/** One setting of one family of methods: what it accepts and what it is when not given. */
export interface Field<S extends z.ZodType, D = z.output<S>> {
  readonly schema: S;
  readonly default: D;
}
const field = <S extends z.ZodType, D = z.output<S>>(schema: S, value: D): Field<S, D> => ({
  schema,
  default: value,
});

// ---- The optimizer and the data ----------------------------------------------------------

/** Any rate in (0, 1]: what a supervised job, a recipe or a trainer may step with. */
const unitRate = ranged(
  z.number(),
  (x) => x > 0 && x <= 1,
  (x) => `Learning rate ${sci(x)} outside valid range (0, 1]`,
);

/** Peak learning rate of the AdamW step (schedule.ts shapes it over the steps). */
export const learningRate = {
  /** SFT/DPO/ORPO: the model default for LoRA (1e-3) or full-parameter training (1e-4). */
  job: field(unitRate, (loraRank: number) => (loraRank > 0 ? 1e-3 : 1e-4)),
  rft: field(
    ranged(
      z.number(),
      (x) => x >= 1e-5 && x <= 5e-4,
      (x) => `Learning rate ${sci(x)} outside valid range [1e-5, 5e-4]`,
    ),
    1e-4,
  ),
  /** A trainer's own optimizer default (training-api.md). */
  trainer: field(unitRate, 1e-5),
} as const;

/** Passes over the dataset. */
export const epochs = {
  /** SFT/DPO/ORPO: fractions allowed (examples × epochs ≤ 3,000,000 is checked at resolve). */
  job: field(
    ranged(
      z.number(),
      (x) => x > 0,
      (x) => `Epochs ${x} must be greater than 0 (fractions allowed)`,
    ),
    1,
  ),
  rft: field(
    ranged(
      z.number(),
      (x) => whole(x) && x >= 1 && x <= 10,
      (x) => `Epochs ${x} must be a whole number in [1, 10]`,
    ),
    1,
  ),
} as const;

/** LoRA rank; 0 = full-parameter training. */
export const loraRank = {
  job: field(
    ranged(
      z.number().int(),
      (x) => x === 0 || (isPowerOfTwo(x) && x <= 32),
      (x) => `LoRA rank ${x} must be 0 (full parameter) or a power of 2 up to 32`,
    ),
    8,
  ),
  /** RFT trains LoRA adapters of rank 4-32, or the full model (seed: "Full-parameter or LoRA"). */
  rft: field(
    ranged(
      z.number().int(),
      (x) => x === 0 || (isPowerOfTwo(x) && x >= 4 && x <= 32),
      (x) => `LoRA rank ${x} must be a power of 2 in [4, 32], or 0 for full-parameter training`,
    ),
    8,
  ),
  /** A trainer is full-parameter unless asked for LoRA; any rank the engine holds. */
  trainer: field(z.number().int().min(0).max(256), 0),
} as const;

/** Tokens per optimizer step (whole sequences packed). */
const batchTokens = z
  .number()
  .int()
  .positive()
  .max(1 << 24);
export const batchSize = {
  job: field(batchTokens, 4096),
  rft: field(batchTokens, 32768),
} as const;

/**
 * The shortest context a job may train with: a prompt and its answer must fit (a model cannot
 * learn from sequences cut to a token or two; `maxContextLength: 1` used to be accepted and
 * fail in the pod).
 */
export const MIN_CONTEXT_LENGTH = 32;

/** Examples are cut at this many tokens; default: the model's own context length. */
export const maxContextLength = field(
  z
    .number()
    .int()
    .min(MIN_CONTEXT_LENGTH, `must be at least ${MIN_CONTEXT_LENGTH} tokens`)
    .max(1 << 20),
  null as number | null,
);

/** Linear warm-up steps from 0 to the peak rate (schedule.ts). */
export const learningRateWarmupSteps = field(z.number().int().nonnegative(), 0);

/** Micro-batches whose gradients one optimizer step sums. */
export const gradientAccumulationSteps = field(z.number().int().positive(), 1);

/** A resumable checkpoint every this many optimizer steps; 0 = only at the end. */
export const checkpointFrequency = field(z.number().int().nonnegative(), 0);

/** Data-order seed; 0 = derived from the job name. */
export const seed = field(z.number().int().nonnegative(), 0);

// ---- How the trainer's engine holds the model (src/engine/options.ts: its own schema) -----

const ENGINE_DEFAULTS = engineOptionsSchema.parse({});

/** Storage of the frozen base weights: 'bfloat16' halves their memory; LoRA only (baseDtypeIssue). */
export const baseDtype = field(
  engineOptionsSchema.shape.baseDtype.removeDefault(),
  ENGINE_DEFAULTS.baseDtype,
);

/** Rebuild each layer's activations in backward: less memory, one more forward of compute. */
export const recompute = field(
  engineOptionsSchema.shape.recompute.removeDefault(),
  ENGINE_DEFAULTS.recompute,
);

/**
 * Why a job's baseDtype cannot go with its LoRA rank, or undefined: a bfloat16 base is frozen,
 * so a full-parameter job (loraRank 0), which trains the base weights, must keep them float32
 * (the engine refuses it too, but only once the pod builds the model).
 */
export function baseDtypeIssue(dtype: string | undefined, rank: number): string | undefined {
  if (dtype !== 'bfloat16' || rank > 0) return undefined;
  return "baseDtype 'bfloat16' needs a LoRA adapter (loraRank > 0): a full-parameter job (loraRank 0) trains the base weights, which stay float32";
}

// ---- Preference losses (their schemas are the losses' own, src/losses/preference.ts) ------

/** DPO's β: 0 < β < 0.5, default 0.1 (the loss's own schema and message). */
export const dpoBeta = field(dpoConfigSchema.shape.beta.removeDefault(), 0.1);

/** ORPO's λ, the weight of the odds-ratio term against the SFT term (the loss's own schema). */
export const orpoLambda = field(orpoConfigSchema.shape.lambda.removeDefault(), 1);

// ---- Reinforcement fine-tuning (rollouts and the policy loss) -----------------------------

/** Prompts per policy step; applies when the dataset has ≥ 2 chunks; -1 = the whole dataset. */
export const chunkSize = field(
  ranged(
    z.number(),
    (x) => whole(x) && (x === -1 || x >= 1),
    (x) => `Chunk size ${x} must be -1 (off) or a positive whole number`,
  ),
  200,
);

/** grpo, dapo or gspo-token; the name and its KL-beta rules are checked by src/losses. */
export const rlLossMethod = field(z.string(), 'grpo');

/** 0 = the loss method's default (src/losses resolves it and words its messages). */
export const rlKlBeta = field(z.number(), 0);

export const temperature = field(
  ranged(
    z.number(),
    (x) => x >= 0.1 && x <= 2,
    (x) => `Temperature ${x} outside valid range [0.1, 2.0]`,
  ),
  0.7,
);

export const topP = field(
  ranged(
    z.number(),
    (x) => x > 0 && x <= 1,
    (x) => `Top-p ${x} outside valid range (0, 1]`,
  ),
  1,
);

export const topK = field(
  ranged(
    z.number(),
    (x) => whole(x) && x >= 0,
    (x) => `Top-k ${x} must be a whole number >= 0 (0 = off)`,
  ),
  40,
);

/** Rollouts per prompt (`--n` is the same setting). */
export const responseCandidatesCount = field(
  ranged(
    z.number(),
    (x) => whole(x) && x >= 2,
    (x) =>
      `Response candidates count (n) ${x} is below the minimum of 2: RFT compares several responses per prompt`,
  ),
  8,
);

export const maxTokens = field(
  ranged(
    z.number(),
    (x) => whole(x) && x >= 16 && x <= 16384,
    (x) => `Max tokens ${x} outside valid range [16, 16384]`,
  ),
  2048,
);

export const maxConcurrentRollouts = field(z.number().int().positive(), 96);

/** Seconds, or a duration ("60s", "2m"); at most an hour. */
export const rolloutTimeout = field(durationSeconds({ min: 1, max: 3600 }), 60);

/**
 * Every setting by its field name (camelCase, as REST bodies and job rows spell it). The
 * one-definition test walks this list.
 */
export const SETTINGS = {
  learningRate,
  epochs,
  loraRank,
  batchSize,
  maxContextLength,
  learningRateWarmupSteps,
  gradientAccumulationSteps,
  checkpointFrequency,
  seed,
  beta: dpoBeta,
  orpoLambda,
  chunkSize,
  rlLossMethod,
  rlKlBeta,
  temperature,
  topP,
  topK,
  responseCandidatesCount,
  maxTokens,
  maxConcurrentRollouts,
  rolloutTimeout,
  baseDtype,
  recompute,
} as const;

// ---- The settings of each family, as object shapes (optional: defaults resolve later) ----

/** SFT, DPO and ORPO settings shared by every supervised/preference job and recipe. */
export const jobSettings = {
  epochs: epochs.job.schema,
  learningRate: learningRate.job.schema,
  learningRateWarmupSteps: learningRateWarmupSteps.schema,
  gradientAccumulationSteps: gradientAccumulationSteps.schema,
  loraRank: loraRank.job.schema,
  batchSize: batchSize.job.schema,
  maxContextLength: maxContextLength.schema,
  checkpointFrequency: checkpointFrequency.schema,
  seed: seed.schema,
  baseDtype: baseDtype.schema,
  recompute: recompute.schema,
};

/** RFT settings: the job settings with RFT's ranges, the rollouts and the policy loss. */
export const rftSettings = {
  ...jobSettings,
  epochs: epochs.rft.schema,
  learningRate: learningRate.rft.schema,
  loraRank: loraRank.rft.schema,
  batchSize: batchSize.rft.schema,
  chunkSize: chunkSize.schema,
  rlLossMethod: rlLossMethod.schema,
  rlKlBeta: rlKlBeta.schema,
  temperature: temperature.schema,
  topP: topP.schema,
  topK: topK.schema,
  responseCandidatesCount: responseCandidatesCount.schema,
  maxTokens: maxTokens.schema,
  maxConcurrentRollouts: maxConcurrentRollouts.schema,
  rolloutTimeout: rolloutTimeout.schema,
};

/**
 * Experiment tracking of a managed job (MLflow): the recipes' own tracking settings
 * (src/tracking/config.ts), so a job and a recipe spell and check them alike. Stored with the
 * job; the experiment name's default is resolved where the job is created.
 */
export const jobTrackingSettings = {
  mlflowTrackingUri: trackingSettingsSchema.shape.mlflowTrackingUri.unwrap(),
  mlflowExperimentName: trackingSettingsSchema.shape.mlflowExperimentName.removeDefault(),
  mlflowRunName: trackingSettingsSchema.shape.mlflowRunName.unwrap(),
};
export const mlflowExperimentNameDefault = trackingSettingsSchema.shape.mlflowExperimentName.parse(
  undefined,
) as string;

/** Every value of a shape optional: a request gives some, the defaults fill in the rest. */
export function optionalShape<T extends Record<string, z.ZodType>>(
  shape: T,
): { [K in keyof T]: z.ZodOptional<T[K]> } {
  return Object.fromEntries(Object.entries(shape).map(([k, s]) => [k, s.optional()])) as {
    [K in keyof T]: z.ZodOptional<T[K]>;
  };
}
