/**
 * `reinforcementFineTuningJobs` (`temper create rftj`): the shared training fields plus the
 * rollout and loss settings, with the spec's defaults and ranges (managed-jobs.md, RFT) and
 * its messages: `Learning rate 1e-2 outside valid range [1e-5, 5e-4]`, n ≥ 2, temperature
 * in [0.1, 2.0] (0 rejected), `Evaluator 'x' not found in account`, and the KL-beta rules of
 * the loss methods, which come from src/losses (resolveRlLossMethod) word for word.
 *
 * The Fireworks SDK's body (what `eval-protocol create rft` sends: `trainingConfig{...}`,
 * `lossConfig{method, klBeta}`, `inferenceParameters{...}`) is flattened to this form first
 * and then validated like it; hosted-only fields are accepted and dropped, and settings that
 * would change training but that temper does not have are refused by name.
 */
import { z } from 'zod';
import { resolveRlLossMethod } from '../../../losses/rl/methods.js';
import { durationSeconds } from '../../../recipes/durations.js';
import type { Deps } from '../../context.js';
import { parseBody } from '../../http/body.js';
import { invalid, zodMessage } from '../../http/errors.js';
import type { CollectionRoutes, RequestCtx } from '../../http/router.js';
import { resolveEvaluator } from '../refs.js';
import { jobRoutes } from './routes.js';
import {
  isPowerOfTwo,
  maxContextLengthSchema,
  Problems,
  resolveTraining,
  sci,
  trainingFields,
} from './training.js';

export const RFT_DEFAULTS = {
  epochs: 1,
  learningRate: 1e-4,
  loraRank: 8,
  batchSize: 32768,
  chunkSize: 200,
  rlLossMethod: 'grpo',
  temperature: 0.7,
  topP: 1,
  topK: 40,
  responseCandidatesCount: 8,
  maxTokens: 2048,
  maxConcurrentRollouts: 96,
  /** Seconds (stored as a number; the request may also say "60s" or "2m"). */
  rolloutTimeout: 60,
} as const;

const rftSchema = z.strictObject({
  ...trainingFields,
  evaluator: z.string().min(1),
  chunkSize: z.number().optional(),
  rlLossMethod: z.string().optional(),
  rlKlBeta: z.number().optional(),
  temperature: z.number().optional(),
  topP: z.number().optional(),
  topK: z.number().optional(),
  responseCandidatesCount: z.number().optional(),
  /** `--n`, the same as responseCandidatesCount. */
  n: z.number().optional(),
  maxTokens: z.number().optional(),
  maxConcurrentRollouts: z.number().int().positive().optional(),
  /** Seconds, or a duration: "60s", "2m"; at most an hour. */
  rolloutTimeout: durationSeconds({ min: 1, max: 3600 }).optional(),
  remoteServerUrl: z.url({ protocol: /^https?$/ }).optional(),
});
type RftInput = z.output<typeof rftSchema>;

const refuse = (what: string, instead: string) =>
  z.unknown().refine(() => false, `${what} is not supported here: ${instead}`);

/** The SDK's nested settings; each key maps to the flat field named in FLAT_NAMES. */
const sdkTrainingConfig = z.strictObject({
  baseModel: z.string().optional(),
  warmStartFrom: z.string().optional(),
  outputModel: z.string().optional(),
  epochs: z.number().optional(),
  learningRate: z.number().optional(),
  learningRateWarmupSteps: z.number().optional(),
  loraRank: z.number().optional(),
  maxContextLength: maxContextLengthSchema.optional(),
  batchSize: z.number().optional(),
  gradientAccumulationSteps: z.number().optional(),
  samplerCheckpointSaveIntervalSteps: z.number().optional(),
  optimizerWeightDecay: z
    .number()
    .refine(
      (x) => x === 0,
      'optimizerWeightDecay is not supported here: RFT steps use no weight decay',
    )
    .optional(),
  batchSizeSamples: refuse('batchSizeSamples', 'give batchSize in tokens').optional(),
  jinjaTemplate: refuse('jinjaTemplate', 'the model renders its own chat template').optional(),
  region: z.string().optional(),
});
const sdkLossConfig = z.strictObject({
  /** GRPO, DAPO, GSPO_TOKEN (the SDK's enum) or grpo, dapo, gspo-token (the CLI's words). */
  method: z.string().optional(),
  klBeta: z.number().optional(),
  dpo: refuse('lossConfig.dpo', 'RFT jobs train with grpo, dapo or gspo-token').optional(),
});
const sdkInferenceParameters = z.strictObject({
  temperature: z.number().optional(),
  topP: z.number().optional(),
  topK: z.number().optional(),
  maxOutputTokens: z.number().optional(),
  responseCandidatesCount: z.number().optional(),
  extraBody: z
    .string()
    .refine(
      (s) => s.trim() === '' || s.trim() === '{}',
      'inferenceParameters.extraBody is not supported here: use the named sampling settings',
    )
    .optional(),
});
const FLAT_NAMES: Record<string, string> = {
  samplerCheckpointSaveIntervalSteps: 'checkpointFrequency',
  maxOutputTokens: 'maxTokens',
  method: 'rlLossMethod',
  klBeta: 'rlKlBeta',
};
/** Fields about hosted capacity, logging services and concurrency of evaluation: dropped. */
const SDK_IGNORED = [
  'nodeCount',
  'reservationTarget',
  'maxInferenceReplicaCount',
  'maxConcurrentEvaluations',
  'wandbConfig',
] as const;
const SDK_CONFIG_IGNORED = ['region', 'optimizerWeightDecay'] as const;
const SDK_REFUSED: Record<string, string> = {
  mcpServer: 'mcpServer is not supported here: run tools in a remote environment (remoteServerUrl)',
  awsS3Config: 'awsS3Config is not supported here: upload the dataset (:upload)',
  azureBlobStorageConfig:
    'azureBlobStorageConfig is not supported here: upload the dataset (:upload)',
};

/** `GRPO`, `GSPO_TOKEN`, `gspo-token` → the loss method names of src/losses. */
function lossMethodName(method: string | undefined): string | undefined {
  if (method === undefined || method === '' || method === 'METHOD_UNSPECIFIED') return undefined;
  return method.toLowerCase().replaceAll('_', '-');
}

/** The SDK's body as the flat form (nested settings merged in, hosted-only fields dropped). */
export function flattenSdkBody(body: Record<string, unknown>): Record<string, unknown> {
  const flat = { ...body };
  for (const key of SDK_IGNORED) delete flat[key];
  for (const [key, message] of Object.entries(SDK_REFUSED))
    if (flat[key] !== undefined) throw invalid(message);
  if (flat.evalAutoCarveout === true)
    throw invalid('evalAutoCarveout is not supported here: give an evaluationDataset');
  delete flat.evalAutoCarveout;
  const nested: [string, z.ZodType<Record<string, unknown>>, readonly string[]][] = [
    ['trainingConfig', sdkTrainingConfig, SDK_CONFIG_IGNORED],
    ['lossConfig', sdkLossConfig, []],
    ['inferenceParameters', sdkInferenceParameters, []],
  ];
  for (const [field, schema, ignored] of nested) {
    if (flat[field] === undefined) continue;
    const r = schema.safeParse(flat[field]);
    if (!r.success) {
      for (const issue of r.error.issues) issue.path.unshift(field);
      throw invalid(zodMessage(r.error));
    }
    delete flat[field];
    for (const [key, raw] of Object.entries(r.data)) {
      if (raw === undefined || ignored.includes(key)) continue;
      const name = FLAT_NAMES[key] ?? key;
      const value = key === 'method' ? lossMethodName(raw as string) : raw;
      if (value === undefined) continue;
      if (flat[name] !== undefined && flat[name] !== value)
        throw invalid(
          `${name} is given both at the top level and in ${field}, with different values`,
        );
      flat[name] = value;
    }
  }
  return flat;
}

const whole = (x: number) => Number.isInteger(x);

function candidates(input: RftInput): number | undefined {
  const { n, responseCandidatesCount: count } = input;
  if (n !== undefined && count !== undefined && n !== count)
    throw invalid(`n (${n}) and responseCandidatesCount (${count}) are the same setting; give one`);
  return count ?? n;
}

function checkRanges(input: RftInput, n: number | undefined): void {
  const p = new Problems();
  const {
    epochs,
    learningRate: lr,
    loraRank,
    temperature: t,
    topP,
    topK,
    maxTokens,
    chunkSize,
  } = input;
  if (lr !== undefined)
    p.check(lr >= 1e-5 && lr <= 5e-4, `Learning rate ${sci(lr)} outside valid range [1e-5, 5e-4]`);
  if (epochs !== undefined)
    p.check(
      whole(epochs) && epochs >= 1 && epochs <= 10,
      `Epochs ${epochs} must be a whole number in [1, 10]`,
    );
  if (loraRank !== undefined)
    p.check(
      isPowerOfTwo(loraRank) && loraRank >= 4 && loraRank <= 32,
      `LoRA rank ${loraRank} must be a power of 2 in [4, 32]`,
    );
  if (t !== undefined)
    p.check(t >= 0.1 && t <= 2, `Temperature ${t} outside valid range [0.1, 2.0]`);
  if (topP !== undefined)
    p.check(topP > 0 && topP <= 1, `Top-p ${topP} outside valid range (0, 1]`);
  if (topK !== undefined)
    p.check(whole(topK) && topK >= 0, `Top-k ${topK} must be a whole number >= 0 (0 = off)`);
  if (n !== undefined)
    p.check(
      whole(n) && n >= 2,
      `Response candidates count (n) ${n} is below the minimum of 2: RFT compares several responses per prompt`,
    );
  if (maxTokens !== undefined)
    p.check(
      whole(maxTokens) && maxTokens >= 16 && maxTokens <= 16384,
      `Max tokens ${maxTokens} outside valid range [16, 16384]`,
    );
  if (chunkSize !== undefined)
    p.check(
      whole(chunkSize) && (chunkSize === -1 || chunkSize >= 1),
      `Chunk size ${chunkSize} must be -1 (off) or a positive whole number`,
    );
  p.throwIfAny();
}

async function build(deps: Deps, ctx: RequestCtx, body: Record<string, unknown>) {
  const input = parseBody(rftSchema, flattenSdkBody(body));
  const n = candidates(input);
  checkRanges(input, n);
  const lossConfig = resolveRlLossMethod({
    method: input.rlLossMethod ?? RFT_DEFAULTS.rlLossMethod,
    ...(input.rlKlBeta !== undefined ? { klBeta: input.rlKlBeta } : {}),
  });
  const rolloutTimeout = input.rolloutTimeout ?? RFT_DEFAULTS.rolloutTimeout;
  const evaluator = await resolveEvaluator(deps, ctx, input.evaluator);
  const t = await resolveTraining(
    deps,
    ctx,
    { ...input, loraRank: input.loraRank ?? RFT_DEFAULTS.loraRank },
    'rft',
  );
  if (t.loraRank === 0)
    throw invalid('LoRA rank 0 must be a power of 2 in [4, 32]: RFT trains LoRA adapters');
  return {
    ...t.fields,
    evaluator,
    learningRate: input.learningRate ?? RFT_DEFAULTS.learningRate,
    batchSize: input.batchSize ?? RFT_DEFAULTS.batchSize,
    chunkSize: input.chunkSize ?? RFT_DEFAULTS.chunkSize,
    rlLossMethod: lossConfig.method,
    rlKlBeta: input.rlKlBeta ?? 0,
    lossConfig,
    temperature: input.temperature ?? RFT_DEFAULTS.temperature,
    topP: input.topP ?? RFT_DEFAULTS.topP,
    topK: input.topK ?? RFT_DEFAULTS.topK,
    responseCandidatesCount: n ?? RFT_DEFAULTS.responseCandidatesCount,
    maxTokens: input.maxTokens ?? RFT_DEFAULTS.maxTokens,
    maxConcurrentRollouts: input.maxConcurrentRollouts ?? RFT_DEFAULTS.maxConcurrentRollouts,
    rolloutTimeout,
    ...(input.remoteServerUrl ? { remoteServerUrl: input.remoteServerUrl } : {}),
  };
}

export function rftRoutes(deps: Deps): CollectionRoutes {
  return jobRoutes(deps, {
    collection: 'reinforcementFineTuningJobs',
    singular: 'reinforcementFineTuningJob',
    resumable: ['JOB_STATE_FAILED'],
    deleteActive: 'refuse',
    build: (ctx, body) => build(deps, ctx, body),
  });
}
