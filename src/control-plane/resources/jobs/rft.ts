/**
 * `reinforcementFineTuningJobs` (`temper create rftj`): the shared training fields plus the
 * rollout and loss settings, with the spec's defaults, ranges and messages (managed-jobs.md,
 * RFT), all from src/recipes/fields.ts: `Learning rate 1e-2 outside valid range [1e-5, 5e-4]`,
 * n ≥ 2, temperature in [0.1, 2.0] (0 rejected); `Evaluator 'x' not found in account`; and the
 * KL-beta rules of the loss methods, which come from src/losses (resolveRlLossMethod) word for
 * word. LoRA rank 0 trains the full model (full-parameter RFT), 4-32 a LoRA adapter.
 *
 * The Fireworks SDK's body (what `eval-protocol create rft` sends: `trainingConfig{...}`,
 * `lossConfig{method, klBeta}`, `inferenceParameters{...}`) is flattened to this form first
 * and then validated like it; hosted-only fields are accepted and dropped, and settings that
 * would change training but that temper does not have are refused by name.
 */
import { z } from 'zod';
import { resolveRlLossMethod } from '../../../losses/rl/methods.js';
import { fields as F } from '../../../recipes/index.js';
import type { Deps } from '../../context.js';
import { invalid, zodMessage } from '../../http/errors.js';
import type { CollectionRoutes, RequestCtx } from '../../http/router.js';
import { resolveEvaluator } from '../refs.js';
import { jobRoutes } from './routes.js';
import { parseJobBody, resolveTraining, rftTrainingFields } from './training.js';

const rftSchema = z.strictObject({
  ...rftTrainingFields,
  evaluator: z.string().min(1),
  /** `--n`, the same setting as responseCandidatesCount. */
  n: F.responseCandidatesCount.schema.optional(),
  /** Remote environment (`--remote-server-url`): rollouts run there, not here. */
  remoteServerUrl: z.url({ protocol: /^https?$/ }).optional(),
});
type RftInput = z.output<typeof rftSchema>;

const refuse = (what: string, instead: string) =>
  z.unknown().refine(() => false, `${what} is not supported here: ${instead}`);

/**
 * A training setting nested in the SDK's body: carried to the flat form as given and checked
 * there, once, by its own schema (src/recipes/fields.ts).
 */
const setting = z.unknown().optional();

/** The SDK's nested settings; each key maps to the flat field named in FLAT_NAMES. */
const sdkTrainingConfig = z.strictObject({
  baseModel: z.string().optional(),
  warmStartFrom: z.string().optional(),
  outputModel: z.string().optional(),
  epochs: setting,
  learningRate: setting,
  learningRateWarmupSteps: setting,
  loraRank: setting,
  maxContextLength: setting,
  batchSize: setting,
  gradientAccumulationSteps: setting,
  samplerCheckpointSaveIntervalSteps: setting,
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
  klBeta: setting,
  dpo: refuse('lossConfig.dpo', 'RFT jobs train with grpo, dapo or gspo-token').optional(),
});
const sdkInferenceParameters = z.strictObject({
  temperature: setting,
  topP: setting,
  topK: setting,
  maxOutputTokens: setting,
  responseCandidatesCount: setting,
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

function candidates(input: RftInput): number | undefined {
  const { n, responseCandidatesCount: count } = input;
  if (n !== undefined && count !== undefined && n !== count)
    throw invalid(`n (${n}) and responseCandidatesCount (${count}) are the same setting; give one`);
  return count ?? n;
}

async function build(deps: Deps, ctx: RequestCtx, body: Record<string, unknown>) {
  const input = parseJobBody(rftSchema, flattenSdkBody(body));
  const n = candidates(input);
  const lossConfig = resolveRlLossMethod({
    method: input.rlLossMethod ?? F.rlLossMethod.default,
    ...(input.rlKlBeta !== undefined ? { klBeta: input.rlKlBeta } : {}),
  });
  const evaluator = await resolveEvaluator(deps, ctx, input.evaluator);
  // LoRA rank 0 is full-parameter RFT: the rollout deployment serves full-weight snapshots.
  const t = await resolveTraining(deps, ctx, input, 'rft', 'rft');
  return {
    ...t.fields,
    evaluator,
    chunkSize: input.chunkSize ?? F.chunkSize.default,
    rlLossMethod: lossConfig.method,
    rlKlBeta: input.rlKlBeta ?? F.rlKlBeta.default,
    lossConfig,
    temperature: input.temperature ?? F.temperature.default,
    topP: input.topP ?? F.topP.default,
    topK: input.topK ?? F.topK.default,
    responseCandidatesCount: n ?? F.responseCandidatesCount.default,
    maxTokens: input.maxTokens ?? F.maxTokens.default,
    maxConcurrentRollouts: input.maxConcurrentRollouts ?? F.maxConcurrentRollouts.default,
    rolloutTimeout: input.rolloutTimeout ?? F.rolloutTimeout.default,
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
